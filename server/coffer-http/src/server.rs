//! The listener: accept, TLS handshake (ALPN `h2`) or h2c, HTTP/2 with
//! upload-friendly settings, and graceful shutdown.
//!
//! Shutdown, in order: the accept loop stops (no new connections); every
//! connection is told to stop (GOAWAY: no new streams, in-flight requests
//! run on); after `shutdown_grace_secs` whatever is left is dropped. A dropped
//! upload never acknowledged anything, so nothing acknowledged is lost.
//!
//! Connections are limited (`conn.rs`): a handshake (TLS, or the h2c
//! preface) within `handshake_timeout_secs`, GOAWAY after
//! `idle_timeout_secs` with no request in flight, and at the limit the
//! longest-idle connection makes room for a newcomer.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::Router;
use coffer_core::Coffer;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use prometheus_client::registry::Registry;

use crate::app::App;
use crate::budget::{BodyBudget, ConnBudget, CONNECTION_ANSWER_BYTES};
use crate::config::HttpConfig;
use crate::conn::{Admission, BusySlot, Conns, InFlight, Slot};
use crate::metrics::Metrics;
use crate::tls::TlsSetup;
use coffer_types::ErrorCode;

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
        let conns = Conns::new(self.config.max_connections.unwrap_or(1024));
        let limits = Arc::new(ConnLimits {
            handshake: Duration::from_secs(self.config.handshake_timeout_secs),
            idle: Duration::from_secs(self.config.idle_timeout_secs),
            grace: Duration::from_secs(self.config.shutdown_grace_secs),
        });
        tracing::info!(
            max_connections = conns.max(),
            idle_timeout_secs = limits.idle.as_secs(),
            "connection limits"
        );
        let mut last_accept_warning: Option<Instant> = None;
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = shutdown.wait_for(|s| *s) => break,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: back off, keep serving.
                    if last_accept_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!(error = %e, connections = conns.len(), "accept failed");
                        last_accept_warning = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let slot = match conns.admit() {
                Admission::Admitted(slot) => slot,
                Admission::Busy(busy) => {
                    self.app.metrics.connection_refused();
                    tokio::spawn(serve_busy(h2.clone(), tcp, self.tls.clone(), busy));
                    continue;
                }
                Admission::Refused => {
                    self.app.metrics.connection_refused();
                    continue;
                }
            };
            let (app, router, h2, tls, limits) = (
                self.app.clone(),
                self.router.clone(),
                h2.clone(),
                self.tls.clone(),
                limits.clone(),
            );
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let connections = app.metrics.connections().clone();
                connections.inc();
                let state = slot.state.clone();
                let answers = ConnBudget(BodyBudget::new(CONNECTION_ANSWER_BYTES));
                let svc = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                    let (app, router) = (app.clone(), router.clone());
                    req.extensions_mut().insert(answers.clone());
                    let in_flight = state.begin();
                    async move {
                        let resp = app.handle(router, req).await;
                        // The request counts as in flight until its answer's
                        // last byte is sent.
                        Ok::<_, Infallible>(resp.map(|b| {
                            Body::new(Guarded {
                                body: b,
                                _in_flight: in_flight,
                            })
                        }))
                    }
                });
                serve_connection(&h2, tcp, tls, svc, &slot, shutdown, &limits, peer).await;
                connections.dec();
                drop(slot);
            });
        }
        drop(listener);
        let grace = Duration::from_secs(self.config.shutdown_grace_secs);
        tracing::info!(
            connections = conns.len(),
            grace_secs = grace.as_secs(),
            "shutting down: no new connections, finishing in-flight requests"
        );
        // Every connection saw `shutdown` and closes by itself within the
        // grace period.
        let all_closed = async {
            while conns.len() > 0 {
                let notified = conns.empty.notified();
                if conns.len() == 0 {
                    break;
                }
                let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
            }
        };
        tokio::select! {
            _ = all_closed => tracing::info!("all connections closed"),
            _ = tokio::time::sleep(grace + Duration::from_secs(1)) => tracing::warn!("grace period over; dropping the remaining connections"),
        }
    }
}

/// The timeouts of a connection.
#[derive(Debug)]
struct ConnLimits {
    handshake: Duration,
    idle: Duration,
    grace: Duration,
}

/// How long an evicted or idle connection gets to finish after GOAWAY.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A response body that holds its request's place in flight until done.
struct Guarded {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Wait until an h2c client has sent the 24 bytes of the HTTP/2 preface
/// (without reading them). False if it closed first.
async fn preface_arrived(tcp: &TcpStream) -> bool {
    let mut buf = [0u8; 24];
    loop {
        if tcp.readable().await.is_err() {
            return false;
        }
        match tcp.peek(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) if n >= buf.len() => return true,
            // Part of it: wait for the rest without spinning.
            Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// Handshake (TLS, or the h2c preface) within the handshake timeout, then
/// HTTP/2 until the client leaves, the connection is evicted or idle too
/// long, or the server shuts down.
#[allow(clippy::too_many_arguments)]
async fn serve_connection<S>(
    h2: &http2::Builder<TokioExecutor>,
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    svc: S,
    slot: &Slot,
    shutdown: watch::Receiver<bool>,
    limits: &ConnLimits,
    peer: std::net::SocketAddr,
) where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = Body> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let handshake = async {
        match tls {
            Some(acceptor) => match acceptor.accept(tcp).await {
                Ok(s) => Some(Io::Tls(Box::new(s))),
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    None
                }
            },
            None => preface_arrived(&tcp).await.then_some(Io::Plain(tcp)),
        }
    };
    let io = tokio::select! {
        r = tokio::time::timeout(limits.handshake, handshake) => match r {
            Ok(Some(io)) => io,
            Ok(None) => return,
            Err(_) => {
                tracing::debug!(%peer, secs = limits.handshake.as_secs(), "no handshake in time; closed");
                return;
            }
        },
        _ = slot.state.evict.notified() => return,
    };
    match io {
        Io::Plain(tcp) => {
            drive(
                h2.serve_connection(TokioIo::new(tcp), svc),
                slot,
                shutdown,
                limits,
                peer,
            )
            .await
        }
        Io::Tls(s) => {
            drive(
                h2.serve_connection(TokioIo::new(*s), svc),
                slot,
                shutdown,
                limits,
                peer,
            )
            .await
        }
    }
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// Run one HTTP/2 connection to its end; GOAWAY when it is evicted, idle
/// past the idle timeout, or the server shuts down, and drop it when it has
/// not finished in time after that.
async fn drive<I, S>(
    conn: http2::Connection<TokioIo<I>, S, TokioExecutor>,
    slot: &Slot,
    mut shutdown: watch::Receiver<bool>,
    limits: &ConnLimits,
    peer: std::net::SocketAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = Body>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(conn);
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(
        (limits.idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(5)),
    );
    loop {
        let closing = deadline.is_some();
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = slot.state.evict.notified(), if !closing => {
                tracing::debug!(%peer, "closing the longest-idle connection to make room");
                conn.as_mut().graceful_shutdown();
                deadline = Some(tokio::time::Instant::now() + CLOSE_GRACE);
            }
            _ = shutdown.wait_for(|s| *s), if !closing => {
                conn.as_mut().graceful_shutdown();
                deadline = Some(tokio::time::Instant::now() + limits.grace);
            }
            _ = tick.tick() => {
                match deadline {
                    Some(d) if tokio::time::Instant::now() >= d => return,
                    Some(_) => {}
                    None => {
                        if slot.state.idle_for_ms().is_some_and(|ms| ms >= limits.idle.as_millis() as u64) {
                            tracing::debug!(%peer, "closing an idle connection");
                            conn.as_mut().graceful_shutdown();
                            deadline = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                        }
                    }
                }
            }
        }
    }
}

/// A connection over the limit, with no idle one to take the place of:
/// every request is answered `503 server_busy`, and after a second it is
/// closed.
async fn serve_busy(
    h2: Arc<http2::Builder<TokioExecutor>>,
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    busy: BusySlot,
) {
    let svc = service_fn(|_req: http::Request<hyper::body::Incoming>| async {
        Ok::<_, Infallible>(crate::response::error(
            ErrorCode::ServerBusy,
            "the server is at its connection limit; retry shortly".into(),
            None,
        ))
    });
    let serve = async {
        match tls {
            Some(acceptor) => {
                if let Ok(s) = acceptor.accept(tcp).await {
                    let _ = h2.serve_connection(TokioIo::new(s), svc).await;
                }
            }
            None => {
                let _ = h2.serve_connection(TokioIo::new(tcp), svc).await;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), serve).await;
    drop(busy);
}
