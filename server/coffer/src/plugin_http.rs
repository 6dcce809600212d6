//! The plugin host's outbound HTTP, on the server's own HTTP stack.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use coffer_http::outbound::{Outbound, OutboundRequest};
use coffer_plugin_host::bindings::http_client::{Request, Response};
use coffer_plugin_host::HttpSender;

pub struct PluginHttp(Outbound);

impl PluginHttp {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self(Outbound::new().map_err(anyhow::Error::msg)?))
    }
}

impl HttpSender for PluginHttp {
    fn send(
        &self,
        to: SocketAddr,
        tls_name: Option<String>,
        req: Request,
        timeout: Duration,
        max_body: usize,
    ) -> Pin<Box<dyn Future<Output = Result<Response, String>> + Send>> {
        let out = self.0.clone();
        Box::pin(async move {
            let r = out
                .send(
                    to,
                    tls_name,
                    OutboundRequest {
                        method: req.method,
                        url: req.url,
                        headers: req.headers,
                        body: req.body,
                    },
                    timeout,
                    max_body,
                )
                .await?;
            Ok(Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            })
        })
    }
}
