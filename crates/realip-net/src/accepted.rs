//! PROXY role: expect (the three roles are listed in the crate docs). The
//! one accept step of every listener that may be told to expect a PROXY
//! header: the trust gate, then the bounded read, then who the connection
//! is from.

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use realip_core::proxy::OwnedHeader;
use realip_core::{LocalAddr, PeerAddr, ProxyClaim, Source, TrustSet};
use tokio::net::TcpStream;

use crate::mode::ProxyMode;
use crate::proxy_header::{claim_of, read_proxy_header, ProxyLimits, ProxyReadError};

/// What a listener expects of a fresh connection's first bytes.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// Whether a PROXY header must come first, and which version.
    pub mode: ProxyMode,
    /// The peers that may send one (the LBs in front).
    pub trusted: &'a TrustSet,
    /// Bounds on reading it.
    pub limits: ProxyLimits,
}

/// A connection past the accept step.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The TCP peer, as the kernel reports it (an LB in front, when a
    /// header came).
    pub socket_peer: PeerAddr,
    /// The client: the source a trusted header names, else the TCP peer.
    pub client: SocketAddr,
    /// The address the client connected to: the header's destination
    /// beside its source, else the socket's local address.
    pub local: LocalAddr,
    /// The header read, kept for its TLVs and for what it said exactly.
    pub header: Option<OwnedHeader>,
    /// Bytes read past the header, to replay in front of the stream
    /// ([`crate::Rewind`]).
    pub rest: Bytes,
}

impl Accepted {
    /// Where [`Accepted::client`] was read: the PROXY header, or the peer.
    pub fn client_source(&self) -> Source {
        match self.header.as_ref().and_then(claimed_endpoints) {
            Some(_) => Source::ProxyProtocol,
            None => Source::Peer,
        }
    }
}

/// Why a connection did not get past the accept step; it is to be closed.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// A PROXY-expecting listener was reached by a peer not allowed to
    /// send a header. Refused before a byte is read: a stranger can neither
    /// make us parse nor speak for anyone.
    #[error(
        "PROXY header expected from {peer}, which is not trusted: closed before reading \
         (trust it if it is an LB in front)"
    )]
    Untrusted {
        /// The TCP peer refused.
        peer: PeerAddr,
    },
    /// A trusted peer did not send a header the listener accepts.
    #[error("PROXY header from {peer}: {source}")]
    Header {
        /// The TCP peer.
        peer: PeerAddr,
        /// What was wrong with it.
        source: ProxyReadError,
    },
    /// The socket could not say its own address.
    #[error("the local address of the connection from {peer}: {source}")]
    LocalAddr {
        /// The TCP peer.
        peer: PeerAddr,
        /// The socket's error.
        source: io::Error,
    },
}

impl Expect<'_> {
    /// The accept step for `stream`, just accepted from `socket_peer`.
    /// With the mode off nothing is read; otherwise the peer must be
    /// trusted before the header is read, within the limits.
    pub async fn accept(
        &self,
        stream: &mut TcpStream,
        socket_peer: PeerAddr,
    ) -> Result<Accepted, AcceptError> {
        let socket_local =
            stream
                .local_addr()
                .map(LocalAddr)
                .map_err(|source| AcceptError::LocalAddr {
                    peer: socket_peer,
                    source,
                })?;
        let unclaimed = Accepted {
            socket_peer,
            client: socket_peer.0,
            local: socket_local,
            header: None,
            rest: Bytes::new(),
        };
        if !self.mode.is_on() {
            return Ok(unclaimed);
        }
        if !self.trusted.contains(socket_peer.0.ip()) {
            return Err(AcceptError::Untrusted { peer: socket_peer });
        }
        let read = read_proxy_header(stream, self.mode, self.limits)
            .await
            .map_err(|source| AcceptError::Header {
                peer: socket_peer,
                source,
            })?;
        let (client, local) = match claimed_endpoints(&read.header) {
            Some((src, dst)) => (src, LocalAddr(dst)),
            // LOCAL or UNKNOWN: the LB in front speaks for itself.
            None => (unclaimed.client, unclaimed.local),
        };
        Ok(Accepted {
            client,
            local,
            header: Some(read.header),
            rest: read.rest,
            ..unclaimed
        })
    }
}

/// The source and destination a header names for a proxied connection,
/// or `None` when it names none (LOCAL, UNKNOWN, UNSPEC, UNIX): then the
/// connection's own endpoints stand, as the spec says.
fn claimed_endpoints(h: &OwnedHeader) -> Option<(SocketAddr, SocketAddr)> {
    match (claim_of(h), h.addresses.destination()) {
        (ProxyClaim::Source(src), Some(dst)) => Some((src, dst)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use realip_core::proxy;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::rewind::Rewind;

    /// A loopback connection: the accepted side and its peer, and the
    /// client side.
    async fn pair() -> (TcpStream, PeerAddr, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        (server, PeerAddr(peer), client)
    }

    fn trusting(cidr: &str) -> TrustSet {
        TrustSet::parse([cidr]).unwrap()
    }

    fn expect(mode: ProxyMode, trusted: &TrustSet) -> Expect<'_> {
        Expect {
            mode,
            trusted,
            limits: ProxyLimits {
                timeout: Duration::from_millis(300),
                max_v2_len: 4096,
            },
        }
    }

    /// The next `n` bytes the application would read.
    async fn app_bytes<S: tokio::io::AsyncRead + Unpin>(io: &mut S, n: usize) -> Vec<u8> {
        let mut got = vec![0u8; n];
        tokio::time::timeout(Duration::from_secs(2), io.read_exact(&mut got))
            .await
            .expect("the bytes in time")
            .unwrap();
        got
    }

    #[tokio::test]
    async fn a_trusted_header_names_the_client_and_the_rest_is_replayed() {
        let (mut server, peer, mut client) = pair().await;
        client
            .write_all(b"PROXY TCP4 192.0.2.1 198.51.100.2 5555 80\r\nHELLO")
            .await
            .unwrap();
        let trusted = trusting("127.0.0.1/32");
        let a = expect(ProxyMode::V1, &trusted)
            .accept(&mut server, peer)
            .await
            .unwrap();
        assert_eq!(a.socket_peer, peer);
        assert_eq!(a.socket_peer.0, client.local_addr().unwrap());
        assert_eq!(a.client, "192.0.2.1:5555".parse::<SocketAddr>().unwrap());
        assert_eq!(a.local, LocalAddr("198.51.100.2:80".parse().unwrap()));
        assert_eq!(a.client_source(), Source::ProxyProtocol);
        assert_eq!(
            a.header.as_ref().map(|h| h.version),
            Some(proxy::Version::V1)
        );
        let mut io = Rewind::new(a.rest, server);
        assert_eq!(app_bytes(&mut io, 5).await, b"HELLO");
    }

    #[tokio::test]
    async fn a_local_header_leaves_the_sockets_own_endpoints() {
        let (mut server, peer, mut client) = pair().await;
        let local = LocalAddr(server.local_addr().unwrap());
        let h = proxy::OwnedHeader {
            version: proxy::Version::V2,
            command: proxy::Command::Local,
            transport: proxy::Transport::Unspec,
            addresses: proxy::Addresses::Unspec,
            tlvs: vec![],
        };
        client.write_all(&h.encode(false).unwrap()).await.unwrap();
        let trusted = trusting("127.0.0.0/8");
        let a = expect(ProxyMode::Any, &trusted)
            .accept(&mut server, peer)
            .await
            .unwrap();
        assert_eq!((a.client, a.local), (peer.0, local));
        assert_eq!(a.client_source(), Source::Peer);
        assert_eq!(a.header.map(|h| h.command), Some(proxy::Command::Local));
    }

    #[tokio::test]
    async fn an_untrusted_peer_is_refused_before_a_byte_is_read() {
        let (mut server, peer, mut client) = pair().await;
        let header = b"PROXY TCP4 192.0.2.1 198.51.100.2 5555 80\r\n";
        client.write_all(header).await.unwrap();
        let trusted = trusting("10.0.0.0/8");
        // Refused at once: no waiting for bytes (the limit is 300 ms).
        let err = tokio::time::timeout(
            Duration::from_millis(100),
            expect(ProxyMode::V1, &trusted).accept(&mut server, peer),
        )
        .await
        .expect("refused without waiting")
        .unwrap_err();
        assert!(
            matches!(err, AcceptError::Untrusted { peer: p } if p == peer),
            "{err}"
        );
        assert!(err.to_string().contains("not trusted"), "{err}");
        // Nothing was consumed: the header is still the first thing there.
        assert_eq!(app_bytes(&mut server, header.len()).await, header);
    }

    #[tokio::test]
    async fn with_the_mode_off_nothing_is_read_and_the_peer_is_the_client() {
        let (mut server, peer, mut client) = pair().await;
        let local = LocalAddr(server.local_addr().unwrap());
        // A header a client wrote itself is its own bytes, not evidence.
        let forged = b"PROXY TCP4 192.0.2.1 198.51.100.2 5555 80\r\n";
        client.write_all(forged).await.unwrap();
        let trusted = trusting("127.0.0.0/8");
        let a = expect(ProxyMode::Off, &trusted)
            .accept(&mut server, peer)
            .await
            .unwrap();
        assert_eq!((a.socket_peer, a.client, a.local), (peer, peer.0, local));
        assert!(a.header.is_none() && a.rest.is_empty());
        assert_eq!(a.client_source(), Source::Peer);
        assert_eq!(app_bytes(&mut server, forged.len()).await, forged);
    }

    #[tokio::test]
    async fn a_header_of_the_other_version_is_refused() {
        let (mut server, peer, mut client) = pair().await;
        client
            .write_all(b"PROXY TCP4 192.0.2.1 198.51.100.2 5555 80\r\n")
            .await
            .unwrap();
        let trusted = trusting("127.0.0.1/32");
        let err = expect(ProxyMode::V2, &trusted)
            .accept(&mut server, peer)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                AcceptError::Header {
                    source: ProxyReadError::WrongVersion {
                        expected: ProxyMode::V2,
                        got: "v1"
                    },
                    ..
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_header_that_does_not_complete_in_time_is_refused() {
        let (mut server, peer, mut client) = pair().await;
        client.write_all(b"PROXY TCP4 192.0.2.1 ").await.unwrap();
        let trusted = trusting("127.0.0.1/32");
        let started = std::time::Instant::now();
        let err = tokio::time::timeout(
            Duration::from_secs(2),
            expect(ProxyMode::V1, &trusted).accept(&mut server, peer),
        )
        .await
        .expect("the limit's 300 ms applies")
        .unwrap_err();
        assert!(
            matches!(
                err,
                AcceptError::Header {
                    source: ProxyReadError::Timeout(_),
                    ..
                }
            ),
            "{err}"
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
        drop(client);
    }
}
