//! The expect role: reading the PROXY header a listener requires off a fresh
//! stream (bounded and timed out) or off the front of each datagram.

use std::io;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use realip_core::proxy;
use realip_core::ProxyClaim;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::mode::ProxyMode;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rewind::Rewind;
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
