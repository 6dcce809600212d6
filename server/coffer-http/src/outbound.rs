//! Outbound HTTP/1.1 for plugins (webhooks and the like). The caller has
//! already checked the destination and resolved it: this connects to exactly
//! that address, sends `Host` from the URL, follows no redirect, and reads
//! at most `max_body` bytes of the answer, all within `timeout`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;

use crate::client::ClientTls;

pub struct OutboundRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

pub struct OutboundResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// An HTTP/1.1 client over plain TCP or rustls (the system's roots).
#[derive(Clone)]
pub struct Outbound {
    tls: tokio_rustls::TlsConnector,
}

impl Outbound {
    pub fn new() -> Result<Self, String> {
        let mut cfg =
            crate::client::tls_config(&ClientTls::default()).map_err(|e| e.to_string())?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
        })
    }

    pub async fn send(
        &self,
        to: SocketAddr,
        tls_name: Option<String>,
        req: OutboundRequest,
        timeout: Duration,
        max_body: usize,
    ) -> Result<OutboundResponse, String> {
        tokio::time::timeout(timeout, self.exchange(to, tls_name, req, max_body))
            .await
            .map_err(|_| format!("no answer within {} ms", timeout.as_millis()))?
    }

    async fn exchange(
        &self,
        to: SocketAddr,
        tls_name: Option<String>,
        req: OutboundRequest,
        max_body: usize,
    ) -> Result<OutboundResponse, String> {
        let uri: http::Uri = req
            .url
            .parse()
            .map_err(|e| format!("invalid URL {:?}: {e}", req.url))?;
        let authority = uri
            .authority()
            .ok_or_else(|| format!("URL {:?} has no host", req.url))?
            .to_string();
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let mut b = http::Request::builder()
            .method(req.method.as_str())
            .uri(path)
            .header(http::header::HOST, authority);
        for (k, v) in &req.headers {
            let lower = k.to_ascii_lowercase();
            if matches!(
                lower.as_str(),
                "host" | "content-length" | "transfer-encoding" | "connection"
            ) {
                continue;
            }
            b = b.header(k.as_str(), v.as_str());
        }
        let request = b
            .body(Full::new(bytes::Bytes::from(req.body)))
            .map_err(|e| format!("invalid request: {e}"))?;
        let tcp = tokio::net::TcpStream::connect(to)
            .await
            .map_err(|e| format!("connect to {to}: {e}"))?;
        let response = match tls_name {
            None => send_on(TokioIo::new(tcp), request).await?,
            Some(name) => {
                let name = ServerName::try_from(name.clone())
                    .map_err(|e| format!("TLS name {name:?}: {e}"))?;
                let tls = self
                    .tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS with {to}: {e}"))?;
                send_on(TokioIo::new(tls), request).await?
            }
        };
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = Limited::new(response.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| format!("reading the answer (limit {max_body} bytes): {e}"))?
            .to_bytes()
            .to_vec();
        Ok(OutboundResponse {
            status,
            headers,
            body,
        })
    }
}

async fn send_on<IO>(
    io: IO,
    request: http::Request<Full<bytes::Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn it_sends_host_from_the_url_and_follows_no_redirect() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            while !String::from_utf8_lossy(&got).contains("ping") {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 302 Found\r\nlocation: http://evil.example/\r\ncontent-length: 2\r\n\r\nno")
                .await
                .unwrap();
            String::from_utf8(got).unwrap()
        });
        let out = Outbound::new().unwrap();
        let r = out
            .send(
                addr,
                None,
                OutboundRequest {
                    method: "POST".into(),
                    url: format!("http://hooks.internal:{}/in?x=1", addr.port()),
                    headers: vec![("Host".into(), "evil.example".into())],
                    body: b"ping".to_vec(),
                },
                Duration::from_secs(5),
                1024,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 302, "a redirect is returned, not followed");
        assert_eq!(r.body, b"no");
        let request = server.await.unwrap().to_ascii_lowercase();
        assert!(
            request.starts_with("post /in?x=1 http/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains(&format!("host: hooks.internal:{}\r\n", addr.port())),
            "{request}"
        );
        assert!(!request.contains("evil"), "{request}");
    }

    #[tokio::test]
    async fn an_answer_over_the_limit_is_refused() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            let body = vec![b'x'; 10_000];
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
            s.write_all(head.as_bytes()).await.unwrap();
            s.write_all(&body).await.unwrap();
        });
        let e = Outbound::new()
            .unwrap()
            .send(
                addr,
                None,
                OutboundRequest {
                    method: "GET".into(),
                    url: format!("http://127.0.0.1:{}/", addr.port()),
                    headers: vec![],
                    body: vec![],
                },
                Duration::from_secs(5),
                1000,
            )
            .await
            .err()
            .unwrap();
        assert!(e.contains("limit 1000"), "{e}");
    }
}
