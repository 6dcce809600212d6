//! TLS setup: load the operator's certificate, or generate a self-signed one
//! on first start and keep it in the data directory.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::config::{TlsConfig, TlsMode};
use crate::HttpError;

/// A ready TLS configuration and what to tell the operator about it.
#[derive(Debug)]
pub struct TlsSetup {
    pub config: Arc<ServerConfig>,
    /// SHA-256 of the leaf certificate (DER), as colon-separated hex.
    pub fingerprint: String,
    /// Where the certificate came from.
    pub cert_path: std::path::PathBuf,
    /// True when this start generated the certificate.
    pub generated: bool,
}

fn file_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> HttpError + 'a {
    move |source| HttpError::File {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The TLS configuration for `cfg`, or `None` for h2c. With
/// [`TlsMode::SelfSigned`] a certificate for `localhost`, `127.0.0.1`, `::1`
/// and this host's name is created in `data_dir/tls` if none is there.
pub fn load_or_create_tls(cfg: &TlsConfig, data_dir: &Path) -> Result<Option<TlsSetup>, HttpError> {
    let (cert_path, key_path, generated) = match cfg.mode {
        TlsMode::Off => return Ok(None),
        TlsMode::Files => (
            cfg.cert_file.clone().expect("validated"),
            cfg.key_file.clone().expect("validated"),
            false,
        ),
        TlsMode::SelfSigned => {
            let dir = data_dir.join("tls");
            let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
            let generated = if c.exists() && k.exists() {
                false
            } else {
                generate(&dir, &c, &k)?;
                true
            };
            (c, k, generated)
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| HttpError::Tls(format!("read certificate {}: {e}", cert_path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| HttpError::Tls(format!("parse certificate {}: {e}", cert_path.display())))?;
    let Some(leaf) = certs.first() else {
        return Err(HttpError::Tls(format!(
            "{} holds no certificate",
            cert_path.display()
        )));
    };
    let fingerprint = fingerprint(leaf);
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| HttpError::Tls(format!("read private key {}: {e}", key_path.display())))?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| HttpError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| HttpError::Tls(format!("certificate and key do not fit together: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Some(TlsSetup {
        config: Arc::new(config),
        fingerprint,
        cert_path,
        generated,
    }))
}

/// SHA-256 of a certificate as `AB:CD:…`.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn generate(dir: &Path, cert: &Path, key: &Path) -> Result<(), HttpError> {
    std::fs::create_dir_all(dir).map_err(file_err("create", dir))?;
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        let h = h.trim();
        if !h.is_empty() && !names.iter().any(|n| n == h) {
            names.push(h.to_string());
        }
    }
    let ck = rcgen::generate_simple_self_signed(names)
        .map_err(|e| HttpError::Tls(format!("generate certificate: {e}")))?;
    write_private(key, ck.signing_key.serialize_pem().as_bytes())?;
    std::fs::File::create(cert)
        .and_then(|mut f| {
            use std::io::Write;
            f.write_all(ck.cert.pem().as_bytes())?;
            f.sync_all()
        })
        .map_err(file_err("write", cert))?;
    // Both names, and the directory's own if it is new, survive power loss:
    // a certificate regenerated after a crash would fail every pinned agent.
    for d in [Some(dir), dir.parent()].into_iter().flatten() {
        std::fs::File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(file_err("sync", d))?;
    }
    Ok(())
}

/// Write a file readable by its owner only (mode 0600).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), HttpError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(file_err("write", path))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(file_err("write", path))
}
