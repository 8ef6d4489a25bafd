//! Reading a request body within the size limit: refused from `Content-Length` alone when it is over,
//! cut off at the limit when no length was given, and decompressed (`Content-Encoding: gzip | deflate`,
//! as tritonclient sends with `request_compression_algorithm`) with the limit applied to the
//! decompressed size, so a small bomb cannot expand without bound.

use crate::ApiError;
use crate::limits::RequestLimits;
use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use flate2::read::{GzDecoder, ZlibDecoder};
use http_body_util::BodyExt;
use std::io::Read;

/// Reads the body within the request limits: its size, and the time the client has to send it (408).
pub(super) async fn read_body(headers: &HeaderMap, body: Body, limits: &RequestLimits) -> Result<Bytes, ApiError> {
    let deadline = limits.body_read_timeout;
    tokio::time::timeout(deadline, read_within(headers, body, limits.max_request_bytes)).await.unwrap_or_else(|_| {
        metrics::counter!("switchyard_http_body_timeouts_total").increment(1);
        Err(ApiError::RequestTimeout(format!("the request body did not arrive within {deadline:?}")))
    })
}

async fn read_within(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = |n: &dyn std::fmt::Display| {
        ApiError::PayloadTooLarge(format!("request body of {n} bytes is over the limit of {limit} bytes"))
    };
    let encoding = match headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().map(str::trim)) {
        None | Some(Ok("" | "identity")) => None,
        Some(Ok(e)) if e.eq_ignore_ascii_case("gzip") || e.eq_ignore_ascii_case("x-gzip") => Some(Encoding::Gzip),
        Some(Ok(e)) if e.eq_ignore_ascii_case("deflate") => Some(Encoding::Deflate),
        Some(other) => {
            let e = ApiError::UnsupportedMediaType(format!(
                "Content-Encoding {other:?} is not supported (gzip, deflate or identity)"
            ));
            return Err(refuse(body, e).await);
        }
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|s| s.parse::<u64>().ok());
    if let Some(len) = declared
        && len > limit as u64
    {
        // A plausible size is read and thrown away (bounded), so the client finishes sending and reads
        // its 413 instead of a reset; an absurd one is refused at once.
        if len <= DRAIN_BYTES as u64 {
            drain(body).await;
        }
        return Err(too_large(&len));
    }
    let raw = collect(body, limit).await.map_err(|e| match e {
        Overflow::TooLarge => too_large(&format!("more than {limit}")),
        Overflow::Broken(m) => ApiError::BadRequest(format!("could not read the request body: {m}")),
    })?;
    let Some(encoding) = encoding else { return Ok(raw) };
    // Decompression is CPU work: keep it off the async executor.
    let out = tokio::task::spawn_blocking(move || decompress(&raw, encoding, limit))
        .await
        .map_err(|e| ApiError::Internal(format!("decompression task failed: {e}")))??;
    if out.len() > limit {
        return Err(too_large(&format!("more than {limit} (decompressed)")));
    }
    Ok(out.into())
}

enum Overflow {
    TooLarge,
    Broken(String),
}

/// Most a refused body is read and thrown away, and for how long, so the client finishes sending and
/// reads its 413 instead of a broken pipe.
const DRAIN_BYTES: usize = 256 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Answers a request early with `e` after reading and discarding its body (within [`DRAIN_BYTES`] and
/// [`DRAIN_TIME`]): a body left unread makes the connection close after the answer, and the client's
/// next request on it fail. Every early answer (404, 400, 401, 405, 415, ...) goes through here.
pub(super) async fn refuse(body: Body, e: ApiError) -> ApiError {
    drain(body).await;
    e
}

/// Reads and discards what is left of a refused body, within [`DRAIN_BYTES`] and [`DRAIN_TIME`].
async fn drain(mut body: Body) {
    let discard = async {
        let mut drained = 0usize;
        while drained < DRAIN_BYTES
            && let Some(Ok(frame)) = body.frame().await
        {
            drained += frame.data_ref().map_or(0, |d| d.len());
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}

/// Reads the body up to `limit` bytes. Past the limit, the rest is drained (within bounds) and
/// discarded, never kept.
async fn collect(mut body: Body, limit: usize) -> Result<Bytes, Overflow> {
    // A body in one frame (the usual case) is kept as it came, without a copy.
    let mut one: Option<Bytes> = None;
    let mut many: Option<bytes::BytesMut> = None;
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Overflow::Broken(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        total += data.len();
        if total > limit {
            drop((one, many));
            drain(body).await;
            return Err(Overflow::TooLarge);
        }
        match (&mut one, &mut many) {
            (None, None) => one = Some(data),
            (Some(first), None) => {
                let mut buf = bytes::BytesMut::with_capacity(first.len() + data.len());
                buf.extend_from_slice(first);
                buf.extend_from_slice(&data);
                one = None;
                many = Some(buf);
            }
            (_, Some(buf)) => buf.extend_from_slice(&data),
        }
    }
    Ok(many.map(bytes::BytesMut::freeze).or(one).unwrap_or_default())
}

/// Decompresses at most `limit + 1` bytes (one more than allowed, to tell "over the limit" apart).
fn decompress(raw: &[u8], encoding: Encoding, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity(raw.len().saturating_mul(4).min(limit));
    let reader: Box<dyn Read + '_> = match encoding {
        Encoding::Gzip => Box::new(GzDecoder::new(raw)),
        Encoding::Deflate => Box::new(ZlibDecoder::new(raw)),
    };
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::BadRequest(format!("request body is not valid {encoding:?} data: {e}")))?;
    Ok(out)
}

#[derive(Debug, Clone, Copy)]
enum Encoding {
    Gzip,
    Deflate,
}
