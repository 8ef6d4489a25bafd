//! The HTTP side: V2 infer with binary tensor data (a JSON header, then the raw bytes; outputs asked
//! as binary), one HTTP/1.1 keep-alive connection per slot.

use crate::{Args, Input, Tally, Window};
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::time::Instant;

pub(crate) async fn run(args: &Args, addr: &str, input: &Input, window: Window) -> Result<Vec<Tally>> {
    let header = serde_json::json!({
        "inputs": [{
            "name": input.name,
            "shape": input.shape,
            "datatype": "FP32",
            "parameters": {"binary_data_size": input.data.len()},
        }],
        "parameters": {"binary_data_output": true},
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&input.data);
    let body = Bytes::from(body);
    let path = format!("/v2/models/{}/infer", args.model);
    let mut slots = Vec::with_capacity(args.concurrency);
    for slot in 0..args.concurrency {
        let stream = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let (body, path, header_len, host) = (body.clone(), path.clone(), header.len(), addr.to_owned());
        let key_header = args.key_header.clone();
        slots.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut n = 0u64;
            while Instant::now() < window.end {
                let sent = Instant::now();
                let mut request = Request::post(path.as_str())
                    .header("host", host.as_str())
                    .header("content-type", "application/octet-stream")
                    .header("inference-header-content-length", header_len);
                if let Some(name) = &key_header {
                    n += 1;
                    request = request.header(name.as_str(), format!("{slot}-{n}"));
                }
                let request = request.body(Full::new(body.clone()));
                let outcome = async {
                    let response = sender.send_request(request?).await?;
                    let status = response.status();
                    let bytes = response.into_body().collect().await?.to_bytes();
                    if !status.is_success() {
                        bail!("HTTP {status}: {}", String::from_utf8_lossy(&bytes[..bytes.len().min(200)]));
                    }
                    Ok(())
                }
                .await;
                let failed = outcome.is_err();
                tally.record(&window, sent, outcome);
                if failed && sender.is_closed() {
                    break;
                }
            }
            tally
        }));
    }
    let mut tallies = Vec::with_capacity(slots.len());
    for slot in slots {
        tallies.push(slot.await?);
    }
    Ok(tallies)
}
