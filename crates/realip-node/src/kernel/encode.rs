//! The byte forms the kernel reads: addresses, protocol numbers, map keys
//! as the registers hold them, and verdicts.

use std::net::IpAddr;

use realip_nft::{datatype, Family as NfFamily, Verdict as NfVerdict};

use crate::model::Proto;
use crate::plan::{ChainName, Family, Key, Verdict};

/// The netlink family of a plan family.
pub fn nf_family(f: Family) -> NfFamily {
    match f {
        Family::Ip => NfFamily::Ipv4,
        Family::Ip6 => NfFamily::Ipv6,
    }
}

/// nft's address type of a family.
pub(super) fn addr_type(family: Family) -> u32 {
    match family {
        Family::Ip => datatype::IPADDR,
        Family::Ip6 => datatype::IP6ADDR,
    }
}

/// Bytes of an address of the family.
pub(super) fn addr_width(family: Family) -> u32 {
    match family {
        Family::Ip => 4,
        Family::Ip6 => 16,
    }
}

/// A map key as the registers hold it: each field padded to 4 bytes.
pub(crate) fn key_bytes(k: &Key) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    let (proto, port) = match k {
        Key::Dest(ip, proto, port) => {
            out.extend_from_slice(&ip_bytes(*ip));
            (proto, port)
        }
        Key::Port(proto, port) => (proto, port),
    };
    out.extend_from_slice(&[proto_number(*proto), 0, 0, 0]);
    out.extend_from_slice(&port.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

/// An address in network order.
pub(super) fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// The IP protocol number.
pub(super) fn proto_number(p: Proto) -> u8 {
    match p {
        Proto::Tcp => 6,
        Proto::Udp => 17,
    }
}

/// A map element's verdict.
pub(super) fn verdict(v: &Verdict) -> NfVerdict {
    match v {
        Verdict::Goto(c) => NfVerdict::Goto(c.to_string()),
        Verdict::Drop => NfVerdict::Drop,
        // Verdict maps cannot hold `reject`; a chain can.
        Verdict::Reject => NfVerdict::Goto(ChainName::Reject.to_string()),
    }
}
