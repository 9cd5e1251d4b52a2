//! What a parsed header says, shared by both versions' parsers.

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::tlv::Tlvs;

/// Parsing limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseConfig {
    /// The largest v2 `len` accepted. Real headers are tens of bytes; a
    /// cap keeps a peer from making us buffer 64 KiB before deciding.
    pub max_v2_len: u16,
}

impl Default for ParseConfig {
    fn default() -> Self {
        ParseConfig { max_v2_len: 4096 }
    }
}

/// Protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// Text.
    V1,
    /// Binary.
    V2,
}

/// v2 command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Sent by the proxy itself (health checks): use the real endpoints.
    Local,
    /// Relayed for a client: the addresses are the client's.
    Proxy,
}

/// v2 transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Unspecified.
    Unspec,
    /// TCP (or another stream).
    Stream,
    /// UDP (or another datagram protocol).
    Dgram,
}

/// The v2 address family (the high nibble of byte 13), which fixes the size
/// of the address block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressFamily {
    /// AF_UNSPEC: no addresses (the receiver uses the connection's own).
    Unspec,
    /// AF_INET.
    Inet,
    /// AF_INET6.
    Inet6,
    /// AF_UNIX.
    Unix,
}

impl AddressFamily {
    /// The family for a nibble, or `None` outside 0-3.
    pub fn from_nibble(nibble: u8) -> Option<Self> {
        match nibble {
            0 => Some(AddressFamily::Unspec),
            1 => Some(AddressFamily::Inet),
            2 => Some(AddressFamily::Inet6),
            3 => Some(AddressFamily::Unix),
            _ => None,
        }
    }

    /// The nibble on the wire.
    pub fn nibble(self) -> u8 {
        match self {
            AddressFamily::Unspec => 0,
            AddressFamily::Inet => 1,
            AddressFamily::Inet6 => 2,
            AddressFamily::Unix => 3,
        }
    }

    /// Bytes of the address block: two addresses and, for IP, two ports.
    pub fn block_len(self) -> u16 {
        match self {
            AddressFamily::Unspec => 0,
            AddressFamily::Inet => 12,
            AddressFamily::Inet6 => 36,
            AddressFamily::Unix => 216,
        }
    }
}

/// The addresses a header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Addresses {
    /// None: v1 UNKNOWN, v2 LOCAL or UNSPEC. Use the connection's own.
    Unspec,
    /// IPv4 source and destination.
    Ipv4 {
        /// The client.
        src: SocketAddrV4,
        /// The address the client connected to.
        dst: SocketAddrV4,
    },
    /// IPv6 source and destination.
    Ipv6 {
        /// The client.
        src: SocketAddrV6,
        /// The address the client connected to.
        dst: SocketAddrV6,
    },
    /// UNIX socket paths, NUL-padded.
    Unix {
        /// Source path.
        src: [u8; 108],
        /// Destination path.
        dst: [u8; 108],
    },
}

impl Addresses {
    /// The family these addresses are written in.
    pub fn family(&self) -> AddressFamily {
        match self {
            Addresses::Unspec => AddressFamily::Unspec,
            Addresses::Ipv4 { .. } => AddressFamily::Inet,
            Addresses::Ipv6 { .. } => AddressFamily::Inet6,
            Addresses::Unix { .. } => AddressFamily::Unix,
        }
    }

    /// The source as a socket address, for the IP families.
    pub fn source(&self) -> Option<SocketAddr> {
        match self {
            Addresses::Ipv4 { src, .. } => Some(SocketAddr::V4(*src)),
            Addresses::Ipv6 { src, .. } => Some(SocketAddr::V6(*src)),
            _ => None,
        }
    }

    /// The destination as a socket address, for the IP families.
    pub fn destination(&self) -> Option<SocketAddr> {
        match self {
            Addresses::Ipv4 { dst, .. } => Some(SocketAddr::V4(*dst)),
            Addresses::Ipv6 { dst, .. } => Some(SocketAddr::V6(*dst)),
            _ => None,
        }
    }
}

/// A parsed header, borrowing its TLVs from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// v1 or v2.
    pub version: Version,
    /// LOCAL or PROXY (v1 is always PROXY).
    pub command: Command,
    /// The transport (v1: Stream, or Unspec for UNKNOWN).
    pub transport: Transport,
    /// The addresses.
    pub addresses: Addresses,
    // The validated TLV area, and the bytes the whole header takes.
    pub(crate) tlvs: &'a [u8],
    pub(crate) len: usize,
}

impl<'a> Header<'a> {
    /// Bytes the header occupies at the front of the input.
    pub fn header_len(&self) -> usize {
        self.len
    }

    /// The TLVs, in order (already validated).
    pub fn tlvs(&self) -> Tlvs<'a> {
        Tlvs::new(self.tlvs)
    }
}

/// The outcome of a parse that did not fail.
// A header is large only because of the two inline 108-byte UNIX paths;
// boxing them would put an allocation on every parse to save a memcpy.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole header.
    Complete(Header<'a>),
    /// A valid prefix: at least this many more bytes are needed.
    Incomplete {
        /// More bytes needed (at least).
        needed: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_nibbles_round_trip_and_only_0_to_3_exist() {
        for n in 0..=15u8 {
            match AddressFamily::from_nibble(n) {
                Some(f) => assert_eq!(f.nibble(), n),
                None => assert!(n > 3),
            }
        }
    }
}
