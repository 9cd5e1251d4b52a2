//! Building headers to send: owned headers and TLVs, and their v1 and v2
//! encodings (the relay and send roles need these; parsing never does).

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::detect::{SIGNATURE, V1_MAX_LEN, V2_PREAMBLE};
use crate::error::EncodeError;
use crate::header::{Addresses, Command, Header, Transport, Version};
use crate::tlv::{tlv_type, Tlv, MAX_UNIQUE_ID};

/// An owned TLV, for building headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedTlv {
    /// 0x01.
    Alpn(Vec<u8>),
    /// 0x02.
    Authority(String),
    /// 0x04.
    Noop(Vec<u8>),
    /// 0x05 (at most 128 bytes).
    UniqueId(Vec<u8>),
    /// 0x20.
    Ssl {
        /// Client flags.
        client: u8,
        /// Verify result.
        verify: u32,
        /// Sub-TLVs, type and value.
        sub: Vec<(u8, Vec<u8>)>,
    },
    /// 0x30.
    Netns(String),
    /// 0xEA.
    Aws {
        /// Subtype.
        subtype: u8,
        /// Value after the subtype.
        value: Vec<u8>,
    },
    /// 0xEE.
    Azure {
        /// Subtype.
        subtype: u8,
        /// Value after the subtype.
        value: Vec<u8>,
    },
    /// 0xE0.
    Gcp {
        /// The PSC connection id.
        psc_connection_id: u64,
    },
    /// Any other type.
    Unknown {
        /// Type.
        kind: u8,
        /// Value.
        value: Vec<u8>,
    },
}

// The owned copies live here, beside the types they make, so that parsing
// does not depend on encoding.
impl Header<'_> {
    /// An owned copy. The CRC32C TLV is dropped: it protects one encoding,
    /// and [`encode_v2`] computes a fresh one on request.
    pub fn to_owned(&self) -> OwnedHeader {
        OwnedHeader {
            version: self.version,
            command: self.command,
            transport: self.transport,
            addresses: self.addresses,
            tlvs: self
                .tlvs()
                .filter(|t| !matches!(t, Tlv::Crc32c(_)))
                .map(|t| t.to_owned())
                .collect(),
        }
    }
}

impl Tlv<'_> {
    /// An owned copy.
    pub fn to_owned(&self) -> OwnedTlv {
        match *self {
            Tlv::Alpn(v) => OwnedTlv::Alpn(v.to_vec()),
            Tlv::Authority(s) => OwnedTlv::Authority(s.to_string()),
            Tlv::Crc32c(_) => OwnedTlv::Unknown {
                kind: tlv_type::CRC32C,
                value: Vec::new(),
            },
            Tlv::Noop(v) => OwnedTlv::Noop(v.to_vec()),
            Tlv::UniqueId(v) => OwnedTlv::UniqueId(v.to_vec()),
            Tlv::Ssl(s) => OwnedTlv::Ssl {
                client: s.client,
                verify: s.verify,
                sub: s.sub_tlvs().map(|t| (t.kind, t.value.to_vec())).collect(),
            },
            Tlv::Netns(s) => OwnedTlv::Netns(s.to_string()),
            Tlv::Aws { subtype, value } => OwnedTlv::Aws {
                subtype,
                value: value.to_vec(),
            },
            Tlv::Azure { subtype, value } => OwnedTlv::Azure {
                subtype,
                value: value.to_vec(),
            },
            Tlv::Gcp { psc_connection_id } => OwnedTlv::Gcp { psc_connection_id },
            Tlv::Unknown { kind, value } => OwnedTlv::Unknown {
                kind,
                value: value.to_vec(),
            },
        }
    }
}

impl OwnedTlv {
    fn write(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let (kind, parts): (u8, Vec<&[u8]>) = match self {
            OwnedTlv::Alpn(v) => (tlv_type::ALPN, vec![v]),
            OwnedTlv::Authority(s) => (tlv_type::AUTHORITY, vec![s.as_bytes()]),
            OwnedTlv::Noop(v) => (tlv_type::NOOP, vec![v]),
            OwnedTlv::UniqueId(v) => {
                if v.len() > MAX_UNIQUE_ID {
                    return Err(EncodeError::TlvTooLong {
                        kind: tlv_type::UNIQUE_ID,
                        len: v.len(),
                    });
                }
                (tlv_type::UNIQUE_ID, vec![v])
            }
            OwnedTlv::Ssl {
                client,
                verify,
                sub,
            } => {
                let mut v = vec![*client];
                v.extend_from_slice(&verify.to_be_bytes());
                for (k, val) in sub {
                    let l = u16::try_from(val.len()).map_err(|_| EncodeError::TlvTooLong {
                        kind: *k,
                        len: val.len(),
                    })?;
                    v.push(*k);
                    v.extend_from_slice(&l.to_be_bytes());
                    v.extend_from_slice(val);
                }
                return write_tlv(out, tlv_type::SSL, &[&v]);
            }
            OwnedTlv::Netns(s) => (tlv_type::NETNS, vec![s.as_bytes()]),
            OwnedTlv::Aws { subtype, value } => {
                return write_tlv(out, tlv_type::AWS, &[&[*subtype], value]);
            }
            OwnedTlv::Azure { subtype, value } => {
                return write_tlv(out, tlv_type::AZURE, &[&[*subtype], value]);
            }
            OwnedTlv::Gcp { psc_connection_id } => {
                return write_tlv(out, tlv_type::GCP, &[&psc_connection_id.to_be_bytes()]);
            }
            OwnedTlv::Unknown { kind, value } => (*kind, vec![value]),
        };
        write_tlv(out, kind, &parts)
    }
}

fn write_tlv(out: &mut Vec<u8>, kind: u8, parts: &[&[u8]]) -> Result<(), EncodeError> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let l = u16::try_from(len).map_err(|_| EncodeError::TlvTooLong { kind, len })?;
    out.push(kind);
    out.extend_from_slice(&l.to_be_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
    Ok(())
}

/// An owned header, for building and keeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedHeader {
    /// v1 or v2.
    pub version: Version,
    /// LOCAL or PROXY.
    pub command: Command,
    /// Transport.
    pub transport: Transport,
    /// Addresses.
    pub addresses: Addresses,
    /// TLVs (v2 only), without CRC32C.
    pub tlvs: Vec<OwnedTlv>,
}

impl OwnedHeader {
    /// A PROXY header for a TCP connection from `src` to `dst` (same family).
    pub fn tcp(version: Version, src: SocketAddr, dst: SocketAddr) -> Self {
        let addresses = match (src, dst) {
            (SocketAddr::V4(s), SocketAddr::V4(d)) => Addresses::Ipv4 { src: s, dst: d },
            (SocketAddr::V6(s), SocketAddr::V6(d)) => Addresses::Ipv6 { src: s, dst: d },
            // Mixed families cannot be expressed; v1 says UNKNOWN then.
            _ => Addresses::Unspec,
        };
        OwnedHeader {
            version,
            command: Command::Proxy,
            transport: Transport::Stream,
            addresses,
            tlvs: Vec::new(),
        }
    }

    /// Encode in the header's own version.
    pub fn encode(&self, with_crc32c: bool) -> Result<Vec<u8>, EncodeError> {
        match self.version {
            Version::V1 => encode_v1(self),
            Version::V2 => encode_v2(self, with_crc32c),
        }
    }
}

/// Encode as v1 (`PROXY TCP4 ...`); LOCAL and unspecified addresses become
/// `PROXY UNKNOWN`.
pub fn encode_v1(h: &OwnedHeader) -> Result<Vec<u8>, EncodeError> {
    if h.transport == Transport::Dgram {
        return Err(EncodeError::V1Unsupported("datagrams"));
    }
    let mut s = String::with_capacity(V1_MAX_LEN);
    match (h.command, &h.addresses) {
        (Command::Local, _) | (_, Addresses::Unspec) => s.push_str("PROXY UNKNOWN\r\n"),
        (_, Addresses::Ipv4 { src, dst }) => {
            let _ = write!(
                s,
                "PROXY TCP4 {} {} {} {}\r\n",
                src.ip(),
                dst.ip(),
                src.port(),
                dst.port()
            );
        }
        (_, Addresses::Ipv6 { src, dst }) => {
            let _ = write!(
                s,
                "PROXY TCP6 {} {} {} {}\r\n",
                src.ip(),
                dst.ip(),
                src.port(),
                dst.port()
            );
        }
        (_, Addresses::Unix { .. }) => return Err(EncodeError::V1Unsupported("UNIX addresses")),
    }
    Ok(s.into_bytes())
}

/// Encode as v2, appending to `out`; with `with_crc32c` a CRC32C TLV is
/// added and filled in.
pub fn encode_v2_into(
    h: &OwnedHeader,
    with_crc32c: bool,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&SIGNATURE);
    out.push(0x20 | if h.command == Command::Proxy { 1 } else { 0 });
    let fam = h.addresses.family().nibble();
    let t = match h.transport {
        Transport::Unspec => 0,
        Transport::Stream => 1,
        Transport::Dgram => 2,
    };
    out.push(fam << 4 | t);
    out.extend_from_slice(&[0, 0]);
    match &h.addresses {
        Addresses::Unspec => {}
        Addresses::Ipv4 { src, dst } => {
            out.extend_from_slice(&src.ip().octets());
            out.extend_from_slice(&dst.ip().octets());
            out.extend_from_slice(&src.port().to_be_bytes());
            out.extend_from_slice(&dst.port().to_be_bytes());
        }
        Addresses::Ipv6 { src, dst } => {
            out.extend_from_slice(&src.ip().octets());
            out.extend_from_slice(&dst.ip().octets());
            out.extend_from_slice(&src.port().to_be_bytes());
            out.extend_from_slice(&dst.port().to_be_bytes());
        }
        Addresses::Unix { src, dst } => {
            out.extend_from_slice(src);
            out.extend_from_slice(dst);
        }
    }
    for t in &h.tlvs {
        t.write(out)?;
    }
    let crc_at = if with_crc32c {
        out.extend_from_slice(&[tlv_type::CRC32C, 0, 4]);
        let at = out.len();
        out.extend_from_slice(&[0, 0, 0, 0]);
        Some(at)
    } else {
        None
    };
    let len = out.len() - start - V2_PREAMBLE;
    let l = u16::try_from(len).map_err(|_| EncodeError::TooLong(len + V2_PREAMBLE))?;
    out[start + 14..start + 16].copy_from_slice(&l.to_be_bytes());
    if let Some(at) = crc_at {
        let crc = crc32c::crc32c(&out[start..]);
        out[at..at + 4].copy_from_slice(&crc.to_be_bytes());
    }
    Ok(())
}

/// Encode as v2.
pub fn encode_v2(h: &OwnedHeader, with_crc32c: bool) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(64);
    encode_v2_into(h, with_crc32c, &mut out)?;
    Ok(out)
}
