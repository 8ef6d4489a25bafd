//! Every limit the server enforces on clients, resolved once at start from flags and environment (which
//! win), the config's `server:` section, then the defaults here. The README's limits table lists them.

use crate::cli::ServeArgs;
use std::time::Duration;
use switchyard_config::{ServerSection, TlsSection};
use switchyard_protocol::DecodeLimits;

/// Default body limit: 64 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 << 20;
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 << 10;
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 512;
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What one connection may do before a request reaches a handler.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_header_bytes: usize,
    /// To send a request's head; also the idle time a keep-alive connection is kept.
    pub header_read_timeout: Duration,
}

/// What one request may do once its head is read.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    pub max_request_bytes: usize,
    pub body_read_timeout: Duration,
    pub max_concurrent_requests: usize,
    /// The server's deadline for a model's answer; a client's V2 `timeout` can only shorten it.
    pub request_timeout: Duration,
    /// Elements per input tensor and bytes per BYTES element.
    pub decode: DecodeLimits,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            body_read_timeout: DEFAULT_READ_TIMEOUT,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            decode: DecodeLimits::default(),
        }
    }
}

/// The listener's limits, the requests' limits and TLS, as configured.
#[derive(Debug, Clone)]
pub struct Limits {
    pub connection: ConnectionLimits,
    pub request: RequestLimits,
    pub tls: Option<TlsSection>,
}

impl Limits {
    pub fn resolve(args: &ServeArgs, file: &ServerSection) -> Self {
        let secs = |flag: Option<u64>, file: Option<switchyard_config::rollout::Seconds>| {
            flag.map(Duration::from_secs).or(file.map(|s| s.0)).unwrap_or(DEFAULT_READ_TIMEOUT)
        };
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsSection { cert: cert.clone(), key: key.clone() }),
            _ => file.tls.clone(),
        };
        Self {
            connection: ConnectionLimits {
                max_connections: args.max_connections.or(file.max_connections).unwrap_or(DEFAULT_MAX_CONNECTIONS),
                max_header_bytes: args.max_header_bytes.or(file.max_header_bytes).unwrap_or(DEFAULT_MAX_HEADER_BYTES),
                header_read_timeout: secs(args.header_read_timeout_secs, file.header_read_timeout),
            },
            request: RequestLimits {
                max_request_bytes: args
                    .max_request_bytes
                    .or(file.max_request_bytes)
                    .unwrap_or(DEFAULT_MAX_REQUEST_BYTES),
                body_read_timeout: secs(args.body_read_timeout_secs, file.body_read_timeout),
                max_concurrent_requests: args
                    .max_concurrent_requests
                    .or(file.max_concurrent_requests)
                    .unwrap_or(DEFAULT_MAX_CONCURRENT_REQUESTS),
                request_timeout: args
                    .request_timeout_ms
                    .or(file.request_timeout_ms)
                    .map_or(DEFAULT_REQUEST_TIMEOUT, Duration::from_millis),
                decode: DecodeLimits {
                    max_elements: args
                        .max_elements
                        .or(file.max_elements)
                        .unwrap_or(DecodeLimits::default().max_elements),
                    max_bytes_element: args
                        .max_bytes_element
                        .or(file.max_bytes_element)
                        .unwrap_or(DecodeLimits::default().max_bytes_element),
                },
            },
            tls,
        }
    }

    /// Limits that cannot work, named (a zero that would refuse everything).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let zero = |v: usize, name: &str, out: &mut Vec<String>| {
            if v == 0 {
                out.push(format!("{name} must be at least 1"));
            }
        };
        zero(self.connection.max_connections, "max_connections", &mut out);
        zero(self.request.max_concurrent_requests, "max_concurrent_requests", &mut out);
        zero(self.request.decode.max_elements, "max_elements", &mut out);
        if self.connection.max_header_bytes < 1024 {
            out.push("max_header_bytes must be at least 1024".into());
        }
        for (d, name) in [
            (self.connection.header_read_timeout, "header_read_timeout"),
            (self.request.body_read_timeout, "body_read_timeout"),
        ] {
            if d.is_zero() {
                out.push(format!("{name} must be more than 0"));
            }
        }
        out
    }
}
