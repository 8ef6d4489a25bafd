//! The CLI's one HTTP/1.1 request to a running server's admin API (plain HTTP, loopback or a cluster's
//! service address), with a deadline, and the answer sorted into what a script needs to know.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::time::Duration;

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

/// `server` as `host:port` and its authority, from `http://host[:port]`.
fn authority(server: &str) -> Result<String, CallError> {
    let rest = server.strip_prefix("http://").ok_or_else(|| {
        CallError::Usage(format!("--server {server}: give an http:// URL (https is not supported by the CLI yet)"))
    })?;
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains('/') {
        return Err(CallError::Usage(format!(
            "--server {server}: give the server's base URL, like http://127.0.0.1:8000"
        )));
    }
    Ok(if host.contains(':') { host.to_owned() } else { format!("{host}:80") })
}

/// Sends `method path` to `server` with the bearer `token`.
pub(crate) async fn call(server: &str, method: &str, path: &str, token: Option<&str>) -> Result<Answer, CallError> {
    let addr = authority(server)?;
    let unreachable = |why: String| CallError::Unreachable { server: server.to_owned(), why };
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(&addr).await.map_err(|e| unreachable(e.to_string()))?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(io).await.map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(conn);
        let mut request = hyper::Request::builder().method(method).uri(path).header("host", addr.as_str());
        if let Some(t) = token {
            request = request.header("authorization", format!("Bearer {t}"));
        }
        let request = request.body(Full::new(Bytes::new())).map_err(|e| CallError::Usage(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.map_err(|e| unreachable(e.to_string()))?.to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::json!({ "error": String::from_utf8_lossy(&bytes).trim().to_owned() }));
        Ok(Answer { status, body })
    };
    match tokio::time::timeout(DEADLINE, exchange).await {
        Ok(result) => result,
        Err(_) => Err(unreachable(format!("no answer within {} s", DEADLINE.as_secs()))),
    }
}

#[cfg(test)]
mod tests {
    use super::authority;

    #[test]
    fn the_server_url_is_checked() {
        assert_eq!(authority("http://127.0.0.1:8000/").unwrap(), "127.0.0.1:8000");
        assert_eq!(authority("http://switchyard").unwrap(), "switchyard:80");
        assert!(authority("127.0.0.1:8000").is_err());
        assert!(authority("http://host/v2").is_err());
    }
}
