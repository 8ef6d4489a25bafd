//! HTTPS for the CLI: the server's certificate must chain to the CA certificates of `--ca-cert` (or the
//! system's bundle), with its name checked. A certificate in `--ca-cert` that is the server's own is
//! also accepted (pinned), within its dates, as curl accepts a self-signed certificate given as `--cacert`:
//! openssl's self-signed certificates say they are CAs, which WebPKI refuses as a server's certificate.

use super::http::CallError;
use crate::listen::TlsError;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::client::{WebPkiServerVerifier, verify_server_name};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::ParsedCertificate;
use tokio_rustls::rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme, crypto,
};

/// Where Linux distributions keep their CA bundle (Debian and Ubuntu, Fedora and RHEL, Alpine), after
/// `SSL_CERT_FILE`.
const SYSTEM_BUNDLES: [&str; 3] =
    ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"];

/// WebPKI's verdict, or the exact certificate pinned.
struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Verifier({} pinned)", self.pinned.len())
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let verdict = self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        if verdict.is_err() && self.pinned.iter().any(|p| p.as_ref() == end_entity.as_ref()) {
            // WebPKI checks a certificate's dates before anything else: an expired pinned certificate
            // is refused as such; any other refusal is its being self-signed, which pinning accepts.
            if let Err(Error::InvalidCertificate(e)) = &verdict
                && matches!(
                    e,
                    CertificateError::Expired
                        | CertificateError::ExpiredContext { .. }
                        | CertificateError::NotValidYet
                        | CertificateError::NotValidYetContext { .. }
                )
            {
                return verdict;
            }
            verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
            return Ok(ServerCertVerified::assertion());
        }
        verdict
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The certificates of `ca_cert`, else of the system's bundle (and whether they were given).
fn certificates(ca_cert: Option<&Path>) -> Result<(Vec<CertificateDer<'static>>, bool), CallError> {
    let path = match ca_cert {
        Some(p) => p.to_owned(),
        None => std::env::var_os("SSL_CERT_FILE")
            .map(PathBuf::from)
            .or_else(|| SYSTEM_BUNDLES.iter().map(PathBuf::from).find(|p| p.exists()))
            .ok_or_else(|| {
                CallError::Usage("no system CA bundle found: pass --ca-cert FILE (or SWITCHYARD_CA_CERT)".into())
            })?,
    };
    let certs = crate::listen::pem_certificates(&path).map_err(|e| match e {
        TlsError::Certificate { path, message } => {
            CallError::Usage(format!("CA certificates {}: {message}", path.display()))
        }
        other => CallError::Usage(other.to_string()),
    })?;
    Ok((certs, ca_cert.is_some()))
}

/// A connector that checks the server's certificate against `ca_cert` (else the system's CAs).
pub(super) fn connector(ca_cert: Option<&Path>) -> Result<TlsConnector, CallError> {
    let (certs, given) = certificates(ca_cert)?;
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(certs.iter().cloned());
    let provider = Arc::new(crypto::ring::default_provider());
    let usage = |e: &dyn fmt::Display| CallError::Usage(format!("TLS: {e}"));
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| usage(&e))?;
    let verifier = Verifier { webpki, pinned: if given { certs } else { Vec::new() } };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| usage(&e))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}
