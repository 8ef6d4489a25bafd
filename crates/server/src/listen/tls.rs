//! HTTPS for the listener: a certificate chain and private key from PEM files (rustls with the ring
//! provider). Off unless both files are configured.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{ServerConfig, crypto};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate {path}: {message}")]
    Certificate { path: PathBuf, message: String },
    #[error("TLS private key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("TLS certificate and key do not make a server config: {0}")]
    Config(String),
}

/// The certificates of the PEM file at `path`: a file that cannot be read, or holds none, is refused with
/// the reason (also the CLI's `--ca-cert`).
pub(crate) fn pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let refused = |message: String| TlsError::Certificate { path: path.to_owned(), message };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| refused(e.to_string()))?;
    if certs.is_empty() {
        return Err(refused("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// The application protocol a TLS port offers (ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// The HTTP port: HTTP/1.1.
    Http1,
    /// The gRPC port: HTTP/2.
    H2,
}

/// An acceptor for the certificate chain at `cert` and the private key at `key`, offering `alpn`.
pub fn acceptor(cert: &Path, key: &Path, alpn: Alpn) -> Result<TlsAcceptor, TlsError> {
    let certs = pem_certificates(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError::Key { path: key.to_owned(), message: e.to_string() })?;
    let provider = Arc::new(crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![match alpn {
        Alpn::Http1 => b"http/1.1".to_vec(),
        Alpn::H2 => b"h2".to_vec(),
    }];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
