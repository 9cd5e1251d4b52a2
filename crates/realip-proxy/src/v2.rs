//! The binary version: a 16-byte preamble, an address block sized by the
//! family, then TLVs, all within the declared (and capped) length.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use crate::detect::{SIGNATURE, V2_PREAMBLE};
use crate::error::Error;
use crate::header::{
    AddressFamily, Addresses, Command, Header, ParseConfig, Parsed, Transport, Version,
};
use crate::tlv::validate_tlvs;

/// Parse a v2 header.
pub fn parse_v2<'a>(buf: &'a [u8], cfg: &ParseConfig) -> Result<Parsed<'a>, Error> {
    let n = buf.len().min(SIGNATURE.len());
    if buf[..n] != SIGNATURE[..n] {
        return Err(Error::NotProxy);
    }
    if buf.len() < V2_PREAMBLE {
        // Check what we have of the version and family bytes early, so a
        // bad header fails without waiting for bytes that will never help.
        if let Some(&vc) = buf.get(12) {
            check_ver_cmd(vc)?;
        }
        if let Some(&ft) = buf.get(13) {
            check_fam_proto(ft)?;
        }
        return Ok(Parsed::Incomplete {
            needed: V2_PREAMBLE - buf.len(),
        });
    }
    let command = check_ver_cmd(buf[12])?;
    let (family, transport) = check_fam_proto(buf[13])?;
    let len = u16::from_be_bytes([buf[14], buf[15]]);
    if len > cfg.max_v2_len {
        return Err(Error::V2TooLong {
            len,
            max: cfg.max_v2_len,
        });
    }
    let need = family.block_len();
    // A PROXY command's address block must fit even under LOCAL rules
    // we check it, since a sender that declares a family must send it.
    if command == Command::Proxy && len < need {
        return Err(Error::V2ShortAddress { len, need });
    }
    let total = V2_PREAMBLE + usize::from(len);
    if buf.len() < total {
        return Ok(Parsed::Incomplete {
            needed: total - buf.len(),
        });
    }
    let body = &buf[V2_PREAMBLE..total];
    // LOCAL, and PROXY with UNSPEC family: the receiver discards the block.
    if command == Command::Local || family == AddressFamily::Unspec {
        return Ok(Parsed::Complete(Header {
            version: Version::V2,
            command,
            transport,
            addresses: Addresses::Unspec,
            tlvs: &[],
            len: total,
        }));
    }
    let addresses = match family {
        AddressFamily::Unspec => Addresses::Unspec,
        AddressFamily::Inet => Addresses::Ipv4 {
            src: SocketAddrV4::new(
                Ipv4Addr::new(body[0], body[1], body[2], body[3]),
                u16::from_be_bytes([body[8], body[9]]),
            ),
            dst: SocketAddrV4::new(
                Ipv4Addr::new(body[4], body[5], body[6], body[7]),
                u16::from_be_bytes([body[10], body[11]]),
            ),
        },
        AddressFamily::Inet6 => {
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&body[0..16]);
            d.copy_from_slice(&body[16..32]);
            Addresses::Ipv6 {
                src: SocketAddrV6::new(
                    Ipv6Addr::from(s),
                    u16::from_be_bytes([body[32], body[33]]),
                    0,
                    0,
                ),
                dst: SocketAddrV6::new(
                    Ipv6Addr::from(d),
                    u16::from_be_bytes([body[34], body[35]]),
                    0,
                    0,
                ),
            }
        }
        AddressFamily::Unix => {
            let mut s = [0u8; 108];
            let mut d = [0u8; 108];
            s.copy_from_slice(&body[0..108]);
            d.copy_from_slice(&body[108..216]);
            Addresses::Unix { src: s, dst: d }
        }
    };
    let tlvs = &body[usize::from(need)..];
    validate_tlvs(&buf[..total], V2_PREAMBLE + usize::from(need))?;
    Ok(Parsed::Complete(Header {
        version: Version::V2,
        command,
        transport,
        addresses,
        tlvs,
        len: total,
    }))
}

fn check_ver_cmd(b: u8) -> Result<Command, Error> {
    if b >> 4 != 2 {
        return Err(Error::V2Version(b >> 4));
    }
    match b & 0x0f {
        0 => Ok(Command::Local),
        1 => Ok(Command::Proxy),
        c => Err(Error::V2Command(c)),
    }
}

fn check_fam_proto(b: u8) -> Result<(AddressFamily, Transport), Error> {
    let fam = AddressFamily::from_nibble(b >> 4).ok_or(Error::V2Family(b >> 4))?;
    let t = match b & 0x0f {
        0 => Transport::Unspec,
        1 => Transport::Stream,
        2 => Transport::Dgram,
        t => return Err(Error::V2Transport(t)),
    };
    Ok((fam, t))
}
