//! The CLI's HTTP/1.1 requests to a running server's admin API, over plain HTTP or HTTPS (`tls.rs`),
//! each with a deadline, and the answer sorted into what a script needs to know.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::path::Path;
use std::time::Duration;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

/// How long one request may take, connection included.
const DEADLINE: Duration = Duration::from_secs(10);

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error("cannot reach {server}: {why}")]
    Unreachable { server: String, why: String },
    #[error("{0}")]
    Usage(String),
}

/// An answer: its status and body (JSON, or the server's error message).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: serde_json::Value,
}

/// A server to ask: its address, and TLS for an `https://` URL.
pub(crate) struct Client {
    server: String,
    /// `host:port`, for the connection and the `Host` header.
    addr: String,
    /// The host alone, for the certificate check.
    host: String,
    tls: Option<TlsConnector>,
    token: Option<String>,
}

/// `(https, host, host:port)` from `http[s]://host[:port]`.
fn target(server: &str) -> Result<(bool, String, String), CallError> {
    let (https, rest) = match (server.strip_prefix("http://"), server.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => return Err(CallError::Usage(format!("--server {server}: give an http:// or https:// URL"))),
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(CallError::Usage(format!(
            "--server {server}: give the server's base URL, like http://127.0.0.1:8000"
        )));
    }
    // `[::1]:8000` or `host:8000`; without a port, the scheme's.
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (authority, None),
    };
    let port = port.map_or(if https { "443" } else { "80" }, |p| p);
    let bare = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    Ok((https, bare, format!("{host}:{port}")))
}

impl Client {
    /// A client for `server` (`http://` or `https://`), sending `token` as the bearer.
    pub(crate) fn new(server: &str, ca_cert: Option<&Path>, token: Option<String>) -> Result<Self, CallError> {
        let (https, host, addr) = target(server)?;
        let tls = if https { Some(super::tls::connector(ca_cert)?) } else { None };
        Ok(Self { server: server.to_owned(), addr, host, tls, token })
    }

    fn unreachable(&self, why: impl std::fmt::Display) -> CallError {
        CallError::Unreachable { server: self.server.clone(), why: why.to_string() }
    }

    /// Sends `method path`; the answer, or why there is none within the deadline.
    pub(crate) async fn call(&self, method: &str, path: &str) -> Result<Answer, CallError> {
        let exchange = async {
            let stream = tokio::net::TcpStream::connect(&self.addr).await.map_err(|e| self.unreachable(e))?;
            match &self.tls {
                None => self.exchange(hyper_util::rt::TokioIo::new(stream), method, path).await,
                Some(tls) => {
                    let name = ServerName::try_from(self.host.clone())
                        .map_err(|e| CallError::Usage(format!("--server {}: {e}", self.server)))?;
                    let stream = tls.connect(name, stream).await.map_err(|e| self.unreachable(e))?;
                    self.exchange(hyper_util::rt::TokioIo::new(stream), method, path).await
                }
            }
        };
        match tokio::time::timeout(DEADLINE, exchange).await {
            Ok(result) => result,
            Err(_) => Err(self.unreachable(format!("no answer within {} s", DEADLINE.as_secs()))),
        }
    }

    async fn exchange<IO>(&self, io: IO, method: &str, path: &str) -> Result<Answer, CallError>
    where
        IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| self.unreachable(e))?;
        tokio::spawn(conn);
        let mut request = hyper::Request::builder().method(method).uri(path).header("host", self.addr.as_str());
        if let Some(t) = &self.token {
            request = request.header("authorization", format!("Bearer {t}"));
        }
        let request = request.body(Full::new(Bytes::new())).map_err(|e| CallError::Usage(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| self.unreachable(e))?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.map_err(|e| self.unreachable(e))?.to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::json!({ "error": String::from_utf8_lossy(&bytes).trim().to_owned() }));
        Ok(Answer { status, body })
    }
}

#[cfg(test)]
mod tests {
    use super::target;

    #[test]
    fn the_server_url_is_checked() {
        let t = |s: &str| target(s).unwrap();
        assert_eq!(t("http://127.0.0.1:8000/"), (false, "127.0.0.1".into(), "127.0.0.1:8000".into()));
        assert_eq!(t("http://switchyard"), (false, "switchyard".into(), "switchyard:80".into()));
        assert_eq!(t("https://switchyard.prod"), (true, "switchyard.prod".into(), "switchyard.prod:443".into()));
        assert_eq!(t("https://[::1]:8443"), (true, "::1".into(), "[::1]:8443".into()));
        assert_eq!(t("https://[::1]"), (true, "::1".into(), "[::1]:443".into()));
        assert!(target("127.0.0.1:8000").is_err());
        assert!(target("ftp://host").is_err());
        assert!(target("http://host/v2").is_err());
    }
}
