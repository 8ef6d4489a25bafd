//! The accept loop: HTTP/1.1 connections (optionally over TLS) within the connection limits, each
//! served by hyper with a deadline for the request head and a cap on its size, and all of them told to
//! finish their current request and close when the server stops.
//!
//! Why not `axum::serve`: it has no connection limit, no head deadline or size cap, and no way to
//! answer a client that stalls mid-head with 408 instead of a silent close.

mod tls;

pub(crate) use tls::pem_certificates;
pub use tls::{Alpn, TlsError, acceptor};

use crate::limits::ConnectionLimits;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// An answer written straight to the socket, outside hyper, then the connection closes.
fn canned(status: &str, extra_headers: &str, error: &str) -> Vec<u8> {
    let body = serde_json::json!({ "error": error }).to_string();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra_headers}connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `router` on `listener` until `stop` turns true, then waits for open connections to finish
/// their current request (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes);
    let http = Arc::new(http);
    let mut connections = JoinSet::new();
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics::counter!("switchyard_http_connections_refused_total").increment(1);
            connections.spawn(refuse(tcp, tls.is_none()));
            continue;
        };
        let (router, http, stop, tls) = (router.clone(), http.clone(), stop.clone(), tls.clone());
        let timeout = limits.header_read_timeout;
        connections.spawn(async move {
            let _permit = permit;
            metrics::gauge!("switchyard_http_connections_open").increment(1.0);
            match tls {
                None => connection(tcp, &http, router, stop).await,
                Some(tls) => match tokio::time::timeout(timeout, tls.accept(tcp)).await {
                    Ok(Ok(stream)) => connection(stream, &http, router, stop).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                },
            }
            metrics::gauge!("switchyard_http_connections_open").decrement(1.0);
        });
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// One connection, until the client closes it, it errs, or the server stops (after the request in
/// progress). A head that stalls past the deadline gets 408 when part of it had arrived; an idle
/// keep-alive connection is closed quietly.
async fn connection<IO>(io: IO, http: &http1::Builder, router: Router, mut stop: watch::Receiver<bool>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut conn = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(router));
    let result = tokio::select! {
        r = &mut conn => r,
        () = stopped(&mut stop) => {
            std::pin::Pin::new(&mut conn).graceful_shutdown();
            (&mut conn).await
        }
    };
    let Err(e) = result else { return };
    if e.is_timeout() {
        let parts = conn.into_parts();
        if !parts.read_buf.is_empty() {
            metrics::counter!("switchyard_http_head_timeouts_total").increment(1);
            let answer = canned("408 Request Timeout", "", "the request head did not arrive in time");
            answer_and_close(parts.io.into_inner(), &answer).await;
        }
    } else {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Resolves once the server stops (the guard `wait_for` returns is not kept across an await).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|&s| s).await;
}

/// A connection over the limit: answered 503 and closed (plain HTTP), or closed (TLS).
async fn refuse(tcp: TcpStream, plain: bool) {
    if plain {
        let answer = canned("503 Service Unavailable", "retry-after: 1\r\n", "too many open connections");
        answer_and_close(tcp, &answer).await;
    }
}

/// Writes `answer`, ends the sending side, and reads what the client still sends (for at most a
/// second): a socket closed with unread data resets the connection, and the client would lose the
/// answer.
async fn answer_and_close<IO: AsyncRead + AsyncWrite + Unpin>(mut io: IO, answer: &[u8]) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        io.write_all(answer).await?;
        io.shutdown().await?;
        let mut sink = [0u8; 4096];
        while io.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}
