//! gRPC over TLS: when the server has a certificate (`--tls-cert`/`--tls-key`), the gRPC port serves it
//! too, offering HTTP/2 by ALPN (what gRPC clients ask for). Handshakes run beside the accept loop, each
//! under a deadline, so a client that connects and says nothing holds no one up; a failed handshake is
//! logged and counted, never fatal.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One accepted TLS connection, as tonic takes it.
pub(super) struct TlsConn(TlsStream<TcpStream>);

impl Connected for TlsConn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The TLS connections accepted on `incoming`. Accepting stops when the stream returned is dropped (the
/// server stopped).
pub(super) fn incoming(mut tcp: TcpIncoming, acceptor: TlsAcceptor) -> ReceiverStream<std::io::Result<TlsConn>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                next = tcp.next() => next,
                () = tx.closed() => return,
            };
            let stream = match accepted {
                Some(Ok(stream)) => stream,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "gRPC accept failed");
                    continue;
                }
                None => return,
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => drop(tx.send(Ok(TlsConn(tls))).await),
                    Ok(Err(e)) => {
                        metrics::counter!("switchyard_grpc_tls_handshake_failures_total").increment(1);
                        tracing::debug!(error = %e, "gRPC TLS handshake failed");
                    }
                    Err(_) => {
                        metrics::counter!("switchyard_grpc_tls_handshake_failures_total").increment(1);
                        tracing::debug!("gRPC TLS handshake timed out");
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
