//! What the plugin host borrows from the server: outbound HTTP on the
//! server's own HTTP stack, and plugins' key-value data in its metadata.

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

/// Plugins' key-value stores, kept in the metadata database.
pub struct PluginKv(pub coffer_core::Coffer);

impl coffer_plugin_host::KvBackend for PluginKv {
    fn get(&self, plugin: &str, key: &str) -> Option<Vec<u8>> {
        self.0.plugin_kv_get(plugin, key).ok().flatten()
    }
    fn set(&self, plugin: &str, key: &str, value: Vec<u8>, max_total: u64) -> Result<(), String> {
        self.0
            .plugin_kv_set(plugin, key, &value, max_total)
            .map_err(|e| e.to_string())?
    }
    fn delete(&self, plugin: &str, key: &str) {
        if let Err(e) = self.0.plugin_kv_delete(plugin, key) {
            tracing::warn!(plugin, "plugin kv delete failed: {e}");
        }
    }
    fn list(&self, plugin: &str, prefix: &str) -> Vec<String> {
        self.0.plugin_kv_keys(plugin, prefix).unwrap_or_default()
    }
}
