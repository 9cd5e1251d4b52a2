//! PROXY role: send. The header the TCP proxy writes to its backend before
//! the client's first byte (`client-ip: proxy-v1 | proxy-v2`); the UDP
//! proxy sends its own per datagram ([`crate::udp`]).
//!
//! PROXY role: relay. The lb has no mode that copies the header it
//! received: a listener with `accept_proxy` expects one (realip-net's
//! [`realip_net::Expect`]), and this then sends a fresh header for the
//! client that one claimed: relay = send with the received client. The
//! received TLVs are not passed on; ours are configured here.

use std::net::SocketAddr;

use realip_core::proxy::{EncodeError, OwnedHeader, OwnedTlv, Version};
use realip_core::LocalAddr;

use crate::forward::RequestIds;

/// TLVs of the PROXY v2 headers sent to backends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyTlvs {
    /// A UNIQUE_ID (32 hex digits, 128 bits) per connection, for correlating logs
    /// along the path.
    pub unique_id: bool,
    /// A CRC32C over the header, so a backend can tell corruption.
    pub crc32c: bool,
    /// An AUTHORITY: the name the client asked for, as configured here.
    pub authority: Option<String>,
}

/// The encoded `version` header telling the backend that `client`
/// connected to `local`, with the configured TLVs when it is v2 (v1 has
/// none).
pub(crate) fn tcp_header(
    version: Version,
    client: SocketAddr,
    local: LocalAddr,
    tlvs: &ProxyTlvs,
    ids: &RequestIds,
) -> Result<Vec<u8>, EncodeError> {
    let mut h = OwnedHeader::tcp(version, client, local.0);
    if version == Version::V2 {
        if let Some(a) = &tlvs.authority {
            h.tlvs.push(OwnedTlv::Authority(a.clone()));
        }
        if tlvs.unique_id {
            h.tlvs
                .push(OwnedTlv::UniqueId(ids.next().as_bytes().to_vec()));
        }
    }
    h.encode(version == Version::V2 && tlvs.crc32c)
}
