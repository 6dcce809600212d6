//! A small HTTP/2 client over TLS (ALPN `h2`) or h2c, for the admin CLI, the
//! integration tests and the benchmark. One connection, many concurrent
//! requests: clone the [`Client`] to send in parallel.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use http::{header, HeaderMap, Method, Request};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

use coffer_types::wire::ErrorBody;

/// How to trust the server's certificate.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// PEM file of certificates to trust (e.g. the server's self-signed one).
    pub ca_cert: Option<PathBuf>,
    /// Accept any certificate. Only for testing against a self-signed server
    /// whose certificate you cannot copy.
    pub insecure: bool,
}

/// A client failure before any HTTP answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("invalid server URL {0:?}: use https://HOST:PORT or http://HOST:PORT (h2c)")]
    Url(String),
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("HTTP/2: {0}")]
    Http(#[from] hyper::Error),
    #[error("build request: {0}")]
    Request(#[from] http::Error),
    #[error("read {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An answer: status, headers, whole body.
#[derive(Debug, Clone)]
pub struct ClientResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ClientResponse {
    /// The body as JSON of type `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The JSON error body, when the status is an error.
    pub fn error(&self) -> Option<ErrorBody> {
        if self.status >= 400 {
            serde_json::from_slice(&self.body).ok()
        } else {
            None
        }
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

type ReqBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// One HTTP/2 connection. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    link: Arc<Link>,
    scheme: &'static str,
    authority: String,
    token: Option<Arc<str>>,
}

/// The connection a client and its clones share, replaced when it closes.
struct Link {
    sender: std::sync::Mutex<http2::SendRequest<ReqBody>>,
    reconnecting: tokio::sync::Mutex<()>,
    tls: ClientTls,
}

impl Link {
    fn current(&self) -> http2::SendRequest<ReqBody> {
        self.sender
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Open an HTTP/2 connection to `authority`.
async fn open(
    scheme: &str,
    authority: &str,
    tls: &ClientTls,
) -> Result<http2::SendRequest<ReqBody>, ClientError> {
    let tcp = TcpStream::connect(authority)
        .await
        .map_err(|source| ClientError::Connect {
            addr: authority.to_owned(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(32 << 20)
        .max_frame_size(256 << 10)
        .max_send_buf_size(1 << 20)
        .adaptive_window(false);
    if scheme == "http" {
        let (sender, conn) = builder.handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        return Ok(sender);
    }
    let host = host_of(authority);
    let name = ServerName::try_from(host.to_owned())
        .map_err(|e| ClientError::Tls(format!("server name {host:?}: {e}")))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config(tls)?));
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err(ClientError::Tls(
            "the server did not agree to HTTP/2 (ALPN h2)".into(),
        ));
    }
    let (sender, conn) = builder.handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({}://{})", self.scheme, self.authority)
    }
}

impl Client {
    /// Connect to `url` (`https://host:port` or `http://host:port` for h2c).
    /// When the server closes the connection (it does after
    /// `http.idle_timeout_secs` without a request), the next request
    /// connects again.
    pub async fn connect(url: &str, tls: &ClientTls) -> Result<Self, ClientError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| ClientError::Url(url.into()))?;
        let authority = rest.trim_end_matches('/').to_owned();
        if authority.is_empty() || authority.contains('/') {
            return Err(ClientError::Url(url.into()));
        }
        let scheme = match scheme {
            "http" => "http",
            "https" => "https",
            _ => return Err(ClientError::Url(url.into())),
        };
        let sender = open(scheme, &authority, tls).await?;
        Ok(Self {
            link: Arc::new(Link {
                sender: std::sync::Mutex::new(sender),
                reconnecting: tokio::sync::Mutex::new(()),
                tls: tls.clone(),
            }),
            scheme,
            authority,
            token: None,
        })
    }

    /// A sender ready for a request: the current connection's, or a new
    /// connection's if the server closed that one. Only a request that was
    /// never sent is moved to a new connection.
    async fn ready_sender(&self) -> Result<http2::SendRequest<ReqBody>, ClientError> {
        let mut sender = self.link.current();
        if !sender.is_closed() && sender.ready().await.is_ok() {
            return Ok(sender);
        }
        // One reconnection at a time: the requests that found the connection
        // closed together share the new one.
        let _one = self.link.reconnecting.lock().await;
        let mut sender = self.link.current();
        if !sender.is_closed() && sender.ready().await.is_ok() {
            return Ok(sender);
        }
        let fresh = open(self.scheme, &self.authority, &self.link.tls).await?;
        *self.link.sender.lock().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
        let mut sender = fresh;
        sender.ready().await?;
        Ok(sender)
    }

    /// Send `Authorization: Bearer <token>` with every request.
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Send one request and read the whole answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<ClientResponse, ClientError> {
        let len = (!body.is_empty()).then_some(body.len() as u64);
        let body = Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync();
        self.send_body(method, path, headers, len, body).await
    }

    /// Send a request whose body is streamed from `body` (e.g. a channel), so
    /// a caller can pace an upload. `content_length`, when given, is sent as
    /// `Content-Length`.
    pub async fn send_stream<S>(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        content_length: Option<u64>,
        body: S,
    ) -> Result<ClientResponse, ClientError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        let body = StreamBody::new(body.map_ok(Frame::data)).boxed_unsync();
        self.send_body(method, path, headers, content_length, body)
            .await
    }

    async fn send_body(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        content_length: Option<u64>,
        body: ReqBody,
    ) -> Result<ClientResponse, ClientError> {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{}://{}{}", self.scheme, self.authority, path))
            .header(
                header::USER_AGENT,
                concat!("coffer-client/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(t) = &self.token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if let Some(n) = content_length {
            b = b.header(header::CONTENT_LENGTH, n);
        }
        let req = b.body(body)?;
        let mut sender = self.ready_sender().await?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(ClientResponse {
            status,
            headers,
            body,
        })
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> Result<ClientResponse, ClientError> {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }

    /// POST `value` as JSON to `path`.
    pub async fn post_json<T: serde::Serialize>(
        &self,
        path: &str,
        value: &T,
    ) -> Result<ClientResponse, ClientError> {
        let body = serde_json::to_vec(value).expect("serializable");
        self.send(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            body.into(),
        )
        .await
    }

    /// PUT a block's bytes.
    pub async fn put(&self, path: &str, body: Bytes) -> Result<ClientResponse, ClientError> {
        self.send(
            Method::PUT,
            path,
            &[("content-type", "application/octet-stream")],
            body,
        )
        .await
    }
}

fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) fn tls_config(tls: &ClientTls) -> Result<rustls::ClientConfig, ClientError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    let mut config = if tls.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider())))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &tls.ca_cert {
            Some(path) => {
                for cert in CertificateDer::pem_file_iter(path)
                    .map_err(|e| ClientError::Tls(format!("read {}: {e}", path.display())))?
                {
                    let cert = cert
                        .map_err(|e| ClientError::Tls(format!("parse {}: {e}", path.display())))?;
                    roots
                        .add(cert)
                        .map_err(|e| ClientError::Tls(format!("trust {}: {e}", path.display())))?;
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Accepts any server certificate but still checks handshake signatures.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
