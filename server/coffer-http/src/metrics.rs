//! Prometheus metrics, served as text at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: &'static str,
}

/// The HTTP front's metrics, registered in the server's one registry. All
/// methods are cheap and lock-free enough for the upload path.
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    errors: Family<CodeLabels, Counter>,
    bytes_in: Counter,
    bytes_out: Counter,
    blocks_stored: Counter,
    blocks_present: Counter,
    upload_seconds: Histogram,
    in_flight: Gauge,
    connections: Gauge,
    connections_refused: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Create the HTTP series and register them in `registry` (the server's
    /// one registry, prefix `coffer`).
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let errors = Family::<CodeLabels, Counter>::default();
        let bytes_in = Counter::default();
        let bytes_out = Counter::default();
        let blocks_stored = Counter::default();
        let blocks_present = Counter::default();
        // 1 ms .. ~33 s
        let upload_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let in_flight = Gauge::default();
        let connections = Gauge::default();
        let connections_refused = Counter::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "errors",
            "Error answers by machine-readable code",
            errors.clone(),
        );
        registry.register("bytes_in", "Request body bytes received", bytes_in.clone());
        registry.register("bytes_out", "Response body bytes sent", bytes_out.clone());
        registry.register(
            "blocks_stored",
            "Blocks newly stored",
            blocks_stored.clone(),
        );
        registry.register(
            "blocks_already_present",
            "Block uploads answered 'already present'",
            blocks_present.clone(),
        );
        registry.register(
            "block_upload_seconds",
            "Time from request start to durable acknowledgement of a block upload",
            upload_seconds.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "Requests being served",
            in_flight.clone(),
        );
        registry.register(
            "http_connections",
            "Open client connections",
            connections.clone(),
        );
        registry.register(
            "http_connections_refused",
            "Connections over the limit with no idle one to make room: answered 503 or closed",
            connections_refused.clone(),
        );
        Self {
            requests,
            errors,
            bytes_in,
            bytes_out,
            blocks_stored,
            blocks_present,
            upload_seconds,
            in_flight,
            connections,
            connections_refused,
        }
    }

    pub(crate) fn request(&self, route: &'static str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
    }

    pub(crate) fn error(&self, code: &'static str) {
        self.errors.get_or_create(&CodeLabels { code }).inc();
    }

    pub(crate) fn bytes_in(&self, n: u64) {
        self.bytes_in.inc_by(n);
    }

    pub(crate) fn bytes_out(&self, n: u64) {
        self.bytes_out.inc_by(n);
    }

    pub(crate) fn block(&self, created: bool, seconds: f64) {
        if created {
            self.blocks_stored.inc();
        } else {
            self.blocks_present.inc();
        }
        self.upload_seconds.observe(seconds);
    }

    pub(crate) fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    pub(crate) fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    pub(crate) fn connections(&self) -> &Gauge {
        &self.connections
    }
}
