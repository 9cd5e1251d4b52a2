//! The fast path for plain HTTP/1.1: bodiless GET and HEAD requests, the
//! traffic of probes, load tests and `curl`, answered without hyper's
//! dispatcher.
//!
//! It handles only what it can handle exactly: a complete request head
//! that `httparse` accepts, method GET or HEAD, HTTP/1.0 or 1.1, no body
//! (no Transfer-Encoding, Content-Length absent or 0), no Upgrade or
//! Expect. Anything else — the h2c preface, a POST, a malformed head, a head
//! over the size or count limit — is handed, with every byte read so far, to
//! hyper for the rest of the connection, so hyper's answers (400, 431, h2c,
//! bodies, 100-continue) stay the only ones. What is left here is framing a
//! response, keep-alive, the head timeout's 408 and graceful shutdown; the
//! head is read, bounded and timed by realip-net's [`read_head`].

use bytes::{Buf, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
use hyper::body::Body as _;
use realip_net::{read_head, Deadline, HeadError, HeadLimits};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::endpoints::{handle, ConnInfo, Payload};
use crate::state::State;

/// How a connection left the fast path.
pub(crate) enum Outcome {
    /// Done: closed, timed out, or shutting down.
    Closed,
    /// Hyper takes over; these bytes were read and not consumed.
    Handoff(Bytes),
}

/// Read buffer to start with; it grows up to the head limit.
const INITIAL_BUF: usize = 4096;

/// Serve requests until the connection ends or needs hyper.
pub(crate) async fn serve<I>(
    io: &mut I,
    info: &ConnInfo,
    state: &State,
    shutdown: &mut watch::Receiver<bool>,
) -> Outcome
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let limits = state.config.limits;
    // One deadline for the whole head, from the end of the last answer:
    // the header timeout is also the keep-alive idle time.
    let head_limits = HeadLimits::new(
        limits.max_header_bytes,
        Deadline::Whole(limits.header_timeout),
    );
    let mut buf = BytesMut::with_capacity(INITIAL_BUF);
    let mut out = Vec::with_capacity(1024);
    // One timer for the connection's head deadlines, reset per request.
    let head_timer = tokio::time::sleep(limits.header_timeout);
    tokio::pin!(head_timer);
    loop {
        // Whatever has arrived is parsed first (pipelined requests need no
        // read).
        let read = read_head(
            io,
            &mut buf,
            &head_limits,
            head_timer.as_mut(),
            Some(&mut *shutdown),
            |b| match parse(b, limits.max_headers) {
                Parse::Partial => None,
                verdict => Some(verdict),
            },
        )
        .await;
        let head = match read {
            Ok(Some(Parse::Simple(head))) => head,
            // Over a limit, malformed, or not for us: hyper answers.
            Ok(Some(Parse::NotSimple | Parse::Partial)) | Err(HeadError::TooLarge { .. }) => {
                return Outcome::Handoff(buf.freeze())
            }
            Err(HeadError::TimedOut) => {
                // Part of a head and then too little: hyper would close
                // without a word; say why.
                tracing::info!(peer = %info.peer, "request head timed out");
                let _ = io.write_all(realip_net::ANSWER_408).await;
                return Outcome::Closed;
            }
            // Closed, failed, idle, or shutting down.
            Ok(None)
            | Err(HeadError::Closed | HeadError::Io(_) | HeadError::Idle | HeadError::Shutdown) => {
                return Outcome::Closed
            }
        };
        let consumed = head.len;
        let keep_alive = head.keep_alive;
        let is_head = head.request.method() == Method::HEAD;
        let version = head.request.version();
        let resp = handle(head.request, info, state).await;
        buf.advance(consumed);
        let (parts, body) = resp.into_parts();
        out.clear();
        write_head(
            &mut out,
            &parts,
            body.size_hint().exact(),
            version,
            keep_alive,
        );
        let written = match body {
            Payload::Full(b) => {
                if let (false, Some(b)) = (is_head, b) {
                    out.extend_from_slice(&b);
                }
                io.write_all(&out).await
            }
            Payload::Repeat { mut left, chunk } => {
                let mut r = io.write_all(&out).await;
                while r.is_ok() && left > 0 && !is_head {
                    let n = left.min(chunk.len() as u64) as usize;
                    r = io.write_all(&chunk[..n]).await;
                    left -= n as u64;
                }
                r
            }
        };
        if written.is_err() || !keep_alive || *shutdown.borrow() {
            let _ = io.shutdown().await;
            return Outcome::Closed;
        }
    }
}

/// A request the fast path can answer.
pub(crate) struct Head {
    pub(crate) request: Request<http_body_util::Empty<Bytes>>,
    /// Bytes of the head.
    pub(crate) len: usize,
    pub(crate) keep_alive: bool,
}

// Returned once per request and taken apart at once; boxing the head would
// add an allocation per request.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Parse {
    Partial,
    NotSimple,
    Simple(Head),
}

pub(crate) fn parse(buf: &[u8], max_headers: usize) -> Parse {
    // hyper's own default is 100; the configured limit is enforced by
    // handing bigger heads to hyper.
    let mut storage = [httparse::EMPTY_HEADER; 100];
    let headers = &mut storage[..max_headers.min(100)];
    let mut req = httparse::Request::new(headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(_) => return Parse::NotSimple,
    };
    let method = match req.method {
        Some("GET") => Method::GET,
        Some("HEAD") => Method::HEAD,
        _ => return Parse::NotSimple,
    };
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Parse::NotSimple,
    };
    let Some(uri) = req.path.and_then(|p| Uri::try_from(p).ok()) else {
        return Parse::NotSimple;
    };
    let mut map = HeaderMap::with_capacity(req.headers.len());
    let mut close = false;
    let mut keep = false;
    for h in req.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return Parse::NotSimple;
        };
        if name == header::CONTENT_LENGTH {
            if h.value != b"0" {
                return Parse::NotSimple;
            }
        } else if name == header::TRANSFER_ENCODING
            || name == header::UPGRADE
            || name == header::EXPECT
        {
            return Parse::NotSimple;
        } else if name == header::CONNECTION {
            for token in h.value.split(|&c| c == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        map.append(name, value);
    }
    let keep_alive = match version {
        Version::HTTP_10 => keep && !close,
        _ => !close,
    };
    let mut request = Request::new(http_body_util::Empty::new());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = map;
    Parse::Simple(Head {
        request,
        len,
        keep_alive,
    })
}

/// The status line and headers as hyper writes them, plus `date`.
fn write_head(
    out: &mut Vec<u8>,
    parts: &http::response::Parts,
    len: Option<u64>,
    version: Version,
    keep_alive: bool,
) {
    out.extend_from_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or("<none>")
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    for (k, v) in &parts.headers {
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(n) = len {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa(n, &mut [0u8; 20]));
        out.extend_from_slice(b"\r\n");
    }
    match (version, keep_alive) {
        (Version::HTTP_10, true) => out.extend_from_slice(b"connection: keep-alive\r\n"),
        (Version::HTTP_11, false) => out.extend_from_slice(b"connection: close\r\n"),
        _ => {}
    }
    out.extend_from_slice(b"date: ");
    date::with(|d| out.extend_from_slice(d));
    out.extend_from_slice(b"\r\n\r\n");
}

fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// The `date` header, formatted once per second per thread.
mod date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }

    pub(super) fn with(f: impl FnOnce(&[u8])) {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.0 != secs {
                *c = (secs, httpdate::fmt_http_date(now));
            }
            f(c.1.as_bytes());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simple(raw: &[u8]) -> Option<Head> {
        match parse(raw, 100) {
            Parse::Simple(h) => Some(h),
            _ => None,
        }
    }

    #[test]
    fn simple_requests_and_keep_alive() {
        let h = simple(b"GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(h.keep_alive);
        assert_eq!(h.request.uri().path(), "/a");
        assert_eq!(h.len, 32);
        let h = simple(b"GET / HTTP/1.1\r\nConnection: foo, Close\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
        let h = simple(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert!(!h.keep_alive);
        let h = simple(b"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
        assert!(h.keep_alive);
        let h = simple(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert!(h.keep_alive);
    }

    #[test]
    fn everything_else_goes_to_hyper() {
        for raw in [
            &b"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx"[..],
            b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"\x01\x02 nonsense\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(parse(raw, 100), Parse::NotSimple),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost", 100),
            Parse::Partial
        ));
        // More headers than allowed: hyper answers 431.
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n", 1),
            Parse::NotSimple
        ));
    }

    #[test]
    fn numbers() {
        assert_eq!(itoa(0, &mut [0; 20]), b"0");
        assert_eq!(itoa(361, &mut [0; 20]), b"361");
        assert_eq!(itoa(u64::MAX, &mut [0; 20]), b"18446744073709551615");
    }
}
