//! The evidence about one request or connection, as callers hand it in.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::headers::Headers;

/// The socket peer: the address the kernel says the connection came from.
/// A distinct type so it cannot be mixed up with a resolved client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

/// The address the client connected to: the socket's local address, or
/// the destination a trusted PROXY header names. A distinct type so it
/// cannot be swapped with the peer it is usually passed beside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocalAddr(pub SocketAddr);

/// A backend a proxy connects to on the client's behalf. A distinct type
/// so a log line or a PROXY header cannot name it where the client or the
/// listener belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendAddr(pub SocketAddr);

// Shown as the bare socket address: log fields and messages stay what they
// were when these were plain `SocketAddr`s.
macro_rules! display_as_socket_addr {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}
display_as_socket_addr!(PeerAddr, LocalAddr, BackendAddr);

/// What a PROXY protocol header claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyClaim {
    /// The source address in the header.
    Source(SocketAddr),
    /// A header without an address (v1 UNKNOWN, v2 LOCAL or UNSPEC): the
    /// spec says to use the connection's own endpoints.
    NoAddress,
}

/// Everything known about one request or connection.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a, H: Headers + ?Sized> {
    /// The socket peer.
    pub peer: PeerAddr,
    /// The request's headers ([`headers::NoHeaders`] for raw TCP/UDP).
    pub headers: &'a H,
    /// The PROXY header's claim, when one was received.
    pub proxy: Option<ProxyClaim>,
    /// The TOA option's address, when one was received.
    pub toa: Option<SocketAddr>,
    /// The custom protocol's client-IP field, when one was read.
    pub field: Option<IpAddr>,
}

impl<'a, H: Headers + ?Sized> Request<'a, H> {
    /// A request with only a peer and headers.
    pub fn new(peer: SocketAddr, headers: &'a H) -> Self {
        Request {
            peer: PeerAddr(peer),
            headers,
            proxy: None,
            toa: None,
            field: None,
        }
    }
}
