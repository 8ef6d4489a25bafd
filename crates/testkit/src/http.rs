//! A minimal blocking HTTP/1.1 client over `std::net::TcpStream`, with a deadline on every request.
//!
//! The fixtures only ever talk to etcd's `/health` endpoint and its JSON gateway (`/v3/...`), and tests
//! use the same calls through a [`Relay`](crate::Relay) to see a connection forwarded, cut or silenced.
//! That needs a request with a hard deadline and a clear error, not a full client, so this writes the
//! request by hand (`Connection: close`) and reads the answer framed by `Content-Length`, chunked
//! encoding or the end of the stream. [`json_field`] picks one scalar out of etcd's small answers without
//! a JSON parser.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// An HTTP answer: status code, headers in order (names as sent) and the body as text (lossy UTF-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// `GET path` on `addr`; the whole exchange (connect, send, answer) must finish within `timeout`, else
/// the error is [`io::ErrorKind::TimedOut`].
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<Response> {
    request(addr, "GET", path, None, timeout)
}

/// `POST path` on `addr` with a JSON body, within `timeout` as for [`get`].
pub fn post_json(addr: SocketAddr, path: &str, body: &str, timeout: Duration) -> io::Result<Response> {
    request(addr, "POST", path, Some(body), timeout)
}

/// One request on a fresh connection. A connection closed before a complete answer is
/// [`io::ErrorKind::UnexpectedEof`]; one that stays silent past the deadline is
/// [`io::ErrorKind::TimedOut`].
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> io::Result<Response> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: switchyard-testkit\r\nConnection: close\r\n");
    if let Some(body) = body {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.unwrap_or("").as_bytes());
    stream.set_write_timeout(Some(remaining(deadline, addr, path)?))?;
    stream.write_all(&out).map_err(|e| timed_out_as(e, addr, path, timeout))?;

    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(response) = parse(&buf, false)? {
            return Ok(response);
        }
        stream.set_read_timeout(Some(remaining(deadline, addr, path)?))?;
        match stream.read(&mut chunk) {
            Ok(0) => {
                return match parse(&buf, true)? {
                    Some(response) => Ok(response),
                    None if buf.is_empty() => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{addr} closed the connection without answering {method} {path}"),
                    )),
                    None => Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{addr} closed the connection in the middle of the answer to {method} {path}"),
                    )),
                };
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(timed_out_as(e, addr, path, timeout)),
        }
    }
}

fn remaining(deadline: Instant, addr: SocketAddr, path: &str) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, format!("no answer from {addr} to {path} in time")));
    }
    Ok(left)
}

/// A socket timeout reads as `WouldBlock` on Unix; callers want `TimedOut`.
fn timed_out_as(e: io::Error, addr: SocketAddr, path: &str, timeout: Duration) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            io::Error::new(io::ErrorKind::TimedOut, format!("no answer from {addr} to {path} within {timeout:?}"))
        }
        _ => e,
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("malformed HTTP answer: {what}"))
}

/// A complete answer out of `buf`, or `None` while more is needed (`eof`: no more will come).
fn parse(buf: &[u8], eof: bool) -> io::Result<Option<Response>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let rest = &buf[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(bad(&format!("status line {status_line:?}")));
    }
    let status =
        parts.next().and_then(|s| s.parse::<u16>().ok()).ok_or_else(|| bad(&format!("status line {status_line:?}")))?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_string(), v.trim().to_string())).collect();
    let header = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());

    let body = if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        match dechunk(rest)? {
            Some(body) => body,
            None if eof => return Err(bad("chunked body cut short")),
            None => return Ok(None),
        }
    } else if let Some(len) = header("content-length") {
        let len: usize = len.parse().map_err(|_| bad(&format!("Content-Length {len:?}")))?;
        if rest.len() < len {
            return if eof { Err(bad("body shorter than its Content-Length")) } else { Ok(None) };
        }
        rest[..len].to_vec()
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else if eof {
        rest.to_vec()
    } else {
        return Ok(None);
    };
    Ok(Some(Response { status, headers, body: String::from_utf8_lossy(&body).into_owned() }))
}

/// The body of a chunked transfer, or `None` while the last (empty) chunk has not arrived.
fn dechunk(mut rest: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_line = String::from_utf8_lossy(&rest[..eol]);
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| bad(&format!("chunk size {size_hex:?}")))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(Some(body));
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// The first scalar value of `"key"` in a JSON text: the contents of a string (no unescaping) or a bare
/// number, `true`, `false` or `null`. etcd's gateway writes 64-bit integers as strings (`"leader":"123"`),
/// other JSON writers as numbers; both come back as the digits. Objects and arrays are not scalars: `None`.
pub fn json_field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let quoted = format!("\"{key}\"");
    let mut from = 0;
    while let Some(at) = json[from..].find(&quoted) {
        let after = &json[from + at + quoted.len()..];
        from += at + quoted.len();
        let Some(value) = after.trim_start().strip_prefix(':') else {
            continue; // the key's text appeared as a value, not as a key
        };
        let value = value.trim_start();
        if let Some(s) = value.strip_prefix('"') {
            return s.find('"').map(|end| &s[..end]);
        }
        let end = value.find(|c: char| c == ',' || c == '}' || c == ']' || c.is_whitespace()).unwrap_or(value.len());
        let scalar = &value[..end];
        return (!scalar.is_empty() && !scalar.starts_with(['{', '['])).then_some(scalar);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_chunked_and_eof_bodies() {
        let fixed = b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{\"health\":\"true\"}";
        let r = parse(fixed, false).expect("parse").expect("complete");
        assert_eq!((r.status, r.body.as_str()), (200, "{\"health\":\"true\"}"));
        assert!(parse(&fixed[..fixed.len() - 1], false).expect("parse").is_none());
        assert!(parse(&fixed[..fixed.len() - 1], true).is_err());

        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n2;x=y\r\nef\r\n0\r\n\r\n";
        let r = parse(chunked, false).expect("parse").expect("complete");
        assert_eq!(r.body, "abcdef");
        assert!(parse(&chunked[..chunked.len() - 5], false).expect("parse").is_none());

        let open = b"HTTP/1.0 404 Not Found\r\nServer: x\r\n\r\nno";
        assert!(parse(open, false).expect("parse").is_none());
        let r = parse(open, true).expect("parse").expect("complete");
        assert_eq!((r.status, r.body.as_str(), r.header("server")), (404, "no", Some("x")));

        assert!(parse(b"SSH-2.0-x\r\n\r\n", true).is_err());
    }

    #[test]
    fn json_field_reads_strings_and_numbers() {
        let status = r#"{"header":{"cluster_id":"1","member_id":"42","raft_term":"2"},"leader":"42","raftTerm": 7,"x":{"leader":1}}"#;
        assert_eq!(json_field(status, "member_id"), Some("42"));
        assert_eq!(json_field(status, "leader"), Some("42"));
        assert_eq!(json_field(status, "raftTerm"), Some("7"));
        assert_eq!(json_field(status, "header"), None);
        assert_eq!(json_field(status, "missing"), None);
        assert_eq!(json_field(r#"{"a":"key","key":true}"#, "key"), Some("true"));
        assert_eq!(json_field(r#"{"ttl":-1}"#, "ttl"), Some("-1"));
    }
}
