//! The answer: a client address and the evidence it was taken from.

use std::fmt;
use std::net::IpAddr;

use crate::strategy::HeaderName;

/// Where a hop's address came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// The socket peer.
    Peer,
    /// A PROXY protocol header.
    ProxyProtocol,
    /// A TOA TCP option.
    Toa,
    /// A custom protocol's client-IP field.
    ClientField,
    /// Entry `index` (0 = leftmost, across all instances) of a header.
    Header {
        /// The header's name as configured.
        name: HeaderName,
        /// Position from the left.
        index: usize,
    },
}

impl Source {
    /// A short machine-readable kind: `peer`, `proxy-protocol`, `toa`,
    /// `client-field` or `header`.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Peer => "peer",
            Source::ProxyProtocol => "proxy-protocol",
            Source::Toa => "toa",
            Source::ClientField => "client-field",
            Source::Header { .. } => "header",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Header { name, index } => write!(f, "{name}[{index}]"),
            s => f.write_str(s.kind()),
        }
    }
}

/// The resolved client: an address and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientAddr {
    /// The client's IP (IPv4-mapped IPv6 unmapped).
    pub ip: IpAddr,
    /// The client's port, when the evidence carried one.
    pub port: Option<u16>,
    /// The hop it came from.
    pub source: Source,
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.port) {
            (IpAddr::V6(ip), Some(p)) => write!(f, "[{ip}]:{p}"),
            (ip, Some(p)) => write!(f, "{ip}:{p}"),
            (ip, None) => write!(f, "{ip}"),
        }
    }
}
