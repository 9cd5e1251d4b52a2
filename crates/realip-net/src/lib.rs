//! realip-net: the socket side of client-IP evidence, on tokio.
//!
//! It reads a PROXY protocol header off a fresh connection (bounded, timed
//! out, never guessing whether one is there), hands the bytes that followed
//! it back through [`Rewind`], and splits a PROXY header off a datagram.
//!
//! What it must not do: decide who the client is (realip-core does), believe
//! a header from an untrusted peer (callers check trust *before* reading, so
//! a stranger cannot even make us parse), or read without a bound or a
//! deadline.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use realip_core::proxy;
use realip_core::ProxyClaim;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

mod timer;
pub mod tls;
pub use timer::ConnTimer;

/// Which PROXY protocol versions a listener expects. Configuration decides;
/// the listener never sniffs for an optional header (the spec forbids it:
/// a client could then forge one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyMode {
    /// No PROXY header is expected; bytes are the application's.
    #[default]
    Off,
    /// A v1 (text) header must come first.
    V1,
    /// A v2 (binary) header must come first.
    V2,
    /// Either version must come first.
    Any,
}

impl ProxyMode {
    /// Whether a header is expected at all.
    pub fn is_on(self) -> bool {
        self != ProxyMode::Off
    }
}

impl FromStr for ProxyMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "off" | "none" => Ok(ProxyMode::Off),
            "v1" => Ok(ProxyMode::V1),
            "v2" => Ok(ProxyMode::V2),
            "any" => Ok(ProxyMode::Any),
            _ => Err(format!("{s:?} is not a PROXY mode (off, v1, v2, any)")),
        }
    }
}

impl fmt::Display for ProxyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyMode::Off => "off",
            ProxyMode::V1 => "v1",
            ProxyMode::V2 => "v2",
            ProxyMode::Any => "any",
        })
    }
}

/// Bounds on reading a PROXY header.
#[derive(Debug, Clone, Copy)]
pub struct ProxyLimits {
    /// The whole header must arrive within this time (slowloris).
    pub timeout: Duration,
    /// The largest v2 payload accepted (after the 16-byte preamble).
    pub max_v2_len: u16,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        ProxyLimits {
            timeout: Duration::from_secs(5),
            max_v2_len: 4096,
        }
    }
}

/// Why no PROXY header was read.
#[derive(Debug, thiserror::Error)]
pub enum ProxyReadError {
    /// The header did not complete in time.
    #[error("no complete PROXY header within {0:?}")]
    Timeout(Duration),
    /// The peer closed before a complete header.
    #[error("connection closed after {0} bytes, before a complete PROXY header")]
    Closed(usize),
    /// The bytes are not a valid header.
    #[error("invalid PROXY header: {0}")]
    Invalid(#[from] proxy::Error),
    /// A valid header of a version this listener does not accept.
    #[error("PROXY {got} header on a listener that expects {expected}")]
    WrongVersion {
        /// The listener's mode.
        expected: ProxyMode,
        /// What arrived.
        got: &'static str,
    },
    /// The first bytes are not a PROXY header at all.
    #[error("connection does not start with a PROXY header (expected {0})")]
    Missing(ProxyMode),
    /// A socket error.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] io::Error),
}

/// A PROXY header read from a stream, and the bytes that came after it.
#[derive(Debug, Clone)]
pub struct ProxyHeader {
    /// The header.
    pub header: proxy::OwnedHeader,
    /// Application bytes read past the header, to be replayed.
    pub rest: Bytes,
}

impl ProxyHeader {
    /// What the header claims about the client.
    pub fn claim(&self) -> ProxyClaim {
        claim_of(&self.header)
    }
}

/// What a header claims: its source address for a PROXY command with an
/// address, else nothing (LOCAL, UNKNOWN, UNSPEC, UNIX).
pub fn claim_of(h: &proxy::OwnedHeader) -> ProxyClaim {
    match (h.command, h.addresses.source()) {
        (proxy::Command::Proxy, Some(src)) => ProxyClaim::Source(src),
        _ => ProxyClaim::NoAddress,
    }
}

fn check_version(mode: ProxyMode, buf: &[u8]) -> Result<bool, ProxyReadError> {
    match proxy::detect(buf) {
        proxy::Detect::NeedMore(_) => Ok(false),
        proxy::Detect::Neither => Err(ProxyReadError::Missing(mode)),
        proxy::Detect::V1 if mode == ProxyMode::V2 => Err(ProxyReadError::WrongVersion {
            expected: mode,
            got: "v1",
        }),
        proxy::Detect::V2 if mode == ProxyMode::V1 => Err(ProxyReadError::WrongVersion {
            expected: mode,
            got: "v2",
        }),
        _ => Ok(true),
    }
}

/// Read a PROXY header from the front of `io`, as `mode` requires, within
/// `limits`. Reads in small steps and never past `16 + max_v2_len` bytes
/// (or 107 for v1) before deciding.
pub async fn read_proxy_header<S: AsyncRead + Unpin>(
    io: &mut S,
    mode: ProxyMode,
    limits: ProxyLimits,
) -> Result<ProxyHeader, ProxyReadError> {
    debug_assert!(mode.is_on());
    match tokio::time::timeout(limits.timeout, read_inner(io, mode, limits)).await {
        Ok(r) => r,
        Err(_) => Err(ProxyReadError::Timeout(limits.timeout)),
    }
}

async fn read_inner<S: AsyncRead + Unpin>(
    io: &mut S,
    mode: ProxyMode,
    limits: ProxyLimits,
) -> Result<ProxyHeader, ProxyReadError> {
    let cfg = proxy::ParseConfig {
        max_v2_len: limits.max_v2_len,
    };
    let cap = 16 + usize::from(limits.max_v2_len);
    let mut buf = BytesMut::with_capacity(256);
    let mut version_checked = false;
    loop {
        // Read at least what the parser asked for, at most up to the cap.
        let want = 256.min(cap.saturating_sub(buf.len())).max(1);
        buf.reserve(want);
        let n = (&mut *io).take(want as u64).read_buf(&mut buf).await?;
        if n == 0 {
            return Err(ProxyReadError::Closed(buf.len()));
        }
        if !version_checked {
            version_checked = check_version(mode, &buf)?;
            if !version_checked {
                continue;
            }
        }
        let consumed = match proxy::parse(&buf, &cfg)? {
            proxy::Parsed::Incomplete { .. } => {
                if buf.len() >= cap {
                    // Cannot happen with a correct parser (the cap is the
                    // largest header it accepts); refuse rather than loop.
                    return Err(ProxyReadError::Missing(mode));
                }
                continue;
            }
            proxy::Parsed::Complete(h) => {
                let owned = h.to_owned();
                (owned, h.header_len())
            }
        };
        let (header, len) = consumed;
        buf.advance(len);
        return Ok(ProxyHeader {
            header,
            rest: buf.freeze(),
        });
    }
}

/// Split a PROXY v2 header off the front of a datagram, as `mode` requires
/// (UDP carries the header in every datagram). Returns the header and the
/// payload after it.
pub fn split_datagram(
    datagram: &[u8],
    mode: ProxyMode,
    max_v2_len: u16,
) -> Result<(proxy::OwnedHeader, &[u8]), ProxyReadError> {
    if !check_version(mode, datagram)? {
        return Err(ProxyReadError::Closed(datagram.len()));
    }
    let cfg = proxy::ParseConfig { max_v2_len };
    match proxy::parse(datagram, &cfg)? {
        proxy::Parsed::Complete(h) => {
            let len = h.header_len();
            Ok((h.to_owned(), &datagram[len..]))
        }
        // A datagram is all there will ever be.
        proxy::Parsed::Incomplete { .. } => Err(ProxyReadError::Closed(datagram.len())),
    }
}

/// A stream with bytes already read from it put back in front.
#[derive(Debug)]
pub struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    /// `prefix` is returned by reads before anything from `inner`.
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Rewind { prefix, inner }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let chunk = self.prefix.split_to(n);
            buf.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Go's time.ParseDuration subset: `1.5s`, `300ms`, `2m`, `1h30m`, `10us`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += n * mult;
    }
    if !total.is_finite() || total > 1e9 {
        return None;
    }
    Some(Duration::from_secs_f64(total))
}

/// The answer to a request head that did not arrive in time (hyper closes
/// without a word; nginx says 408).
pub const ANSWER_408: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// A hyper server for HTTP/1.1 and h2 as whoami and the lb serve it: one
/// timer per HTTP/1 connection for the head deadline ([`ConnTimer`]), heads
/// capped at `max_header_bytes` (hyper refuses HTTP/1 buffers under
/// 8 KiB), one flat write per response (a write(2) beats writev's two
/// iovecs for small answers: bench/whoami.sh), at most 256 h2 streams.
pub fn http_server(
    header_timeout: Duration,
    max_header_bytes: usize,
) -> hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor> {
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http1()
        .timer(ConnTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(max_header_bytes.max(8192))
        .writev(false);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256);
    builder
}

/// Accepts at most `cap` connections at a time: at the cap it stops
/// accepting and the kernel's backlog holds the rest (HAProxy's `maxconn`).
/// An accept error (out of descriptors and the like) backs off instead of
/// spinning.
#[derive(Debug)]
pub struct CappedAccept {
    listener: tokio::net::TcpListener,
    slots: std::sync::Arc<tokio::sync::Semaphore>,
}

impl CappedAccept {
    /// `listener` with `cap` connections at once.
    pub fn new(listener: tokio::net::TcpListener, cap: usize) -> Self {
        CappedAccept {
            listener,
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(cap)),
        }
    }

    /// The next connection and its slot (held until the connection ends),
    /// or `None` once `shutdown` turns true.
    pub async fn next(
        &self,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Option<(
        tokio::sync::OwnedSemaphorePermit,
        tokio::net::TcpStream,
        std::net::SocketAddr,
    )> {
        let permit = tokio::select! {
            p = self.slots.clone().acquire_owned() => p.ok()?,
            _ = shutdown.wait_for(|&v| v) => return None,
        };
        loop {
            let accepted = tokio::select! {
                r = self.listener.accept() => r,
                _ = shutdown.wait_for(|&v| v) => return None,
            };
            match accepted {
                Ok((s, peer)) => return Some((permit, s, peer)),
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn limits() -> ProxyLimits {
        ProxyLimits {
            timeout: Duration::from_millis(300),
            max_v2_len: 4096,
        }
    }

    #[tokio::test]
    async fn v1_then_payload_is_rewound() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(b"PROXY TCP4 192.0.2.1 10.0.0.1 5555 80\r\nGET / HTTP/1.1\r\n")
            .await
            .unwrap();
        let h = read_proxy_header(&mut b, ProxyMode::Any, limits())
            .await
            .unwrap();
        assert_eq!(
            h.claim(),
            ProxyClaim::Source("192.0.2.1:5555".parse().unwrap())
        );
        let mut r = Rewind::new(h.rest.clone(), b);
        let mut got = vec![0u8; 16];
        r.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn byte_by_byte_header_completes() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let line = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n";
        tokio::spawn(async move {
            for byte in line {
                a.write_all(&[*byte]).await.unwrap();
                tokio::task::yield_now().await;
            }
            // Keep the stream open until the reader is done.
            tokio::time::sleep(Duration::from_millis(200)).await;
        });
        let h = read_proxy_header(&mut b, ProxyMode::V1, limits())
            .await
            .unwrap();
        assert!(h.rest.is_empty());
        assert_eq!(
            h.claim(),
            ProxyClaim::Source("[2001:db8::1]:1".parse().unwrap())
        );
    }

    #[tokio::test]
    async fn errors_are_clear() {
        let cases: [(&[u8], ProxyMode, &str); 4] = [
            (b"GET / HTTP/1.1\r\n\r\n", ProxyMode::Any, "does not start"),
            (
                b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\n",
                ProxyMode::V2,
                "expects v2",
            ),
            (
                b"PROXY TCP4 1.1.1.1 2.2.2.2 01 2\r\n",
                ProxyMode::V1,
                "invalid",
            ),
            (b"PROXY TCP4 1.1.1", ProxyMode::V1, "closed"),
        ];
        for (input, mode, want) in cases {
            let (mut a, mut b) = tokio::io::duplex(1024);
            a.write_all(input).await.unwrap();
            drop(a);
            let err = read_proxy_header(&mut b, mode, limits())
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    #[tokio::test]
    async fn slow_header_times_out() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(b"PROXY TCP4 ").await.unwrap();
        let err = read_proxy_header(&mut b, ProxyMode::V1, limits())
            .await
            .unwrap_err();
        assert!(matches!(err, ProxyReadError::Timeout(_)), "{err}");
        drop(a);
    }

    #[test]
    fn datagram_split() {
        let h = proxy::OwnedHeader {
            version: proxy::Version::V2,
            command: proxy::Command::Proxy,
            transport: proxy::Transport::Dgram,
            addresses: proxy::Addresses::Ipv4 {
                src: "192.0.2.9:53".parse().unwrap(),
                dst: "10.0.0.1:53".parse().unwrap(),
            },
            tlvs: vec![],
        };
        let mut d = proxy::encode_v2(&h, false).unwrap();
        d.extend_from_slice(b"WHO\n");
        let (got, payload) = split_datagram(&d, ProxyMode::V2, 4096).unwrap();
        assert_eq!(payload, b"WHO\n");
        assert_eq!(
            claim_of(&got),
            ProxyClaim::Source("192.0.2.9:53".parse().unwrap())
        );
        assert!(split_datagram(b"WHO\n", ProxyMode::V2, 4096).is_err());
        assert!(split_datagram(&d[..20], ProxyMode::V2, 4096).is_err());
    }
}

/// A stream that fails with `TimedOut` when neither side moves a byte for
/// a whole idle period: keep-alive connections and slow readers cannot pin
/// a slot forever.
///
/// Activity only sets a flag; when the timer fires, a flagged period
/// re-arms it and an unflagged one ends the stream. So a busy connection
/// costs no clock read and no timer operation per request, and an idle one
/// is closed between one and two idle periods after its last byte.
#[derive(Debug)]
pub struct IdleTimeout<S> {
    inner: S,
    idle: Duration,
    active: bool,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<S> IdleTimeout<S> {
    /// Wrap `inner`; the clock starts now.
    pub fn new(inner: S, idle: Duration) -> Self {
        IdleTimeout {
            inner,
            idle,
            active: false,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn touch(&mut self) {
        self.active = true;
    }

    /// Bytes written count as activity; a write that waits may time out.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.touch();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.check(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            if self.deadline.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if !self.active {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("idle for {:?}", self.idle),
                ));
            }
            // Bytes moved during the period that just ended: start another
            // and poll again to register the waker.
            self.active = false;
            let next = tokio::time::Instant::now() + self.idle;
            self.deadline.as_mut().reset(next);
        }
    }
}

use std::future::Future as _;

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.check(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.after_write(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after_write(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod idle_tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn idle_stream_times_out_busy_one_does_not() {
        let (mut a, b) = tokio::io::duplex(64);
        let mut s = IdleTimeout::new(b, Duration::from_millis(200));
        // Activity every 100 ms for 500 ms keeps it alive.
        let writer = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                a.write_all(b"x").await.unwrap();
            }
            a
        });
        let mut got = 0;
        let mut buf = [0u8; 8];
        while got < 5 {
            got += s
                .read(&mut buf)
                .await
                .expect("busy stream must not time out");
        }
        let _a = writer.await.unwrap();
        // Then silence: the next read fails with TimedOut.
        let t = std::time::Instant::now();
        let err = s.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(150));
    }
}
