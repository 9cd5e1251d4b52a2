//! The TOA TCP option: the client address an L4 proxy (LVS FULLNAT, Tencent
//! CLB, Huawei ELB, Alibaba SLB, dpvs) writes into the TCP header it sends on.
//!
//! Layouts, all network byte order after the kind and length bytes:
//! - kind 254, length 8: port (2) then IPv4 (4): LVS, Huawei, dpvs;
//! - kind 200, length 8: the same layout, Tencent's kind;
//! - kind 253, length 20: port (2) then IPv6 (16): Alibaba;
//! - kind 254, length 20: port then IPv6: dpvs's IPv6 form.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Which vendor's option kind carried the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToaKind {
    /// Kind 254 (LVS, Huawei, dpvs).
    Lvs,
    /// Kind 200 (Tencent).
    Tencent,
    /// Kind 253 (Alibaba, IPv6).
    Alibaba,
}

impl ToaKind {
    /// The TCP option kind byte.
    pub fn kind(self) -> u8 {
        match self {
            ToaKind::Lvs => 254,
            ToaKind::Tencent => 200,
            ToaKind::Alibaba => 253,
        }
    }

    /// The kind for an option kind byte, if it is a TOA kind.
    pub fn from_kind(kind: u8) -> Option<Self> {
        match kind {
            254 => Some(ToaKind::Lvs),
            200 => Some(ToaKind::Tencent),
            253 => Some(ToaKind::Alibaba),
            _ => None,
        }
    }
}

/// A decoded TOA option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Toa {
    /// The option kind it came in.
    pub kind: ToaKind,
    /// The client's address and port.
    pub addr: SocketAddr,
}

/// Why bytes are not a TOA option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ToaError {
    /// Fewer bytes than the option claims, or than any layout needs.
    #[error("TOA option truncated: {have} bytes, need {need}")]
    Truncated {
        /// Bytes given.
        have: usize,
        /// Bytes the option needs.
        need: usize,
    },
    /// Not kind 254, 200 or 253.
    #[error("TCP option kind {0} is not a TOA kind (254, 200, 253)")]
    NotToa(u8),
    /// A TOA kind with a length no vendor uses.
    #[error("TOA kind {kind} with length {len}; expected 8 (IPv4) or 20 (IPv6)")]
    BadLength {
        /// The kind byte.
        kind: u8,
        /// The length byte.
        len: u8,
    },
    /// Port 0 or an unspecified address: never a real client.
    #[error("TOA option carries an unspecified address or port 0")]
    Unspecified,
    /// The TCP options area is malformed (a length that runs past the end).
    #[error("malformed TCP options area at byte {0}")]
    BadOptions(usize),
    /// An encoder was asked for a layout that kind does not have.
    #[error("TOA kind {0:?} cannot carry this address family")]
    WrongFamily(ToaKind),
}

/// Length of an IPv4 TOA option.
pub const TOA_V4_LEN: u8 = 8;
/// Length of an IPv6 TOA option.
pub const TOA_V6_LEN: u8 = 20;

/// Decode one option, `bytes` starting at its kind byte. Bytes after the
/// option's length are ignored.
pub fn decode(bytes: &[u8]) -> Result<Toa, ToaError> {
    let (&kind_byte, rest) = bytes
        .split_first()
        .ok_or(ToaError::Truncated { have: 0, need: 2 })?;
    let kind = ToaKind::from_kind(kind_byte).ok_or(ToaError::NotToa(kind_byte))?;
    let &len = rest
        .first()
        .ok_or(ToaError::Truncated { have: 1, need: 2 })?;
    let valid = matches!(
        (kind, len),
        (ToaKind::Lvs, TOA_V4_LEN | TOA_V6_LEN)
            | (ToaKind::Tencent, TOA_V4_LEN)
            | (ToaKind::Alibaba, TOA_V6_LEN)
    );
    if !valid {
        return Err(ToaError::BadLength {
            kind: kind_byte,
            len,
        });
    }
    let need = usize::from(len);
    if bytes.len() < need {
        return Err(ToaError::Truncated {
            have: bytes.len(),
            need,
        });
    }
    let port = u16::from_be_bytes([bytes[2], bytes[3]]);
    let ip = if len == TOA_V4_LEN {
        IpAddr::V4(Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]))
    } else {
        let mut o = [0u8; 16];
        o.copy_from_slice(&bytes[4..20]);
        IpAddr::V6(Ipv6Addr::from(o))
    };
    if port == 0 || ip.is_unspecified() {
        return Err(ToaError::Unspecified);
    }
    Ok(Toa {
        kind,
        addr: SocketAddr::new(ip, port),
    })
}

/// Encode an option. IPv4 needs kind 254 or 200; IPv6 kind 253 or 254.
pub fn encode(kind: ToaKind, addr: SocketAddr) -> Result<Vec<u8>, ToaError> {
    let mut out = Vec::with_capacity(usize::from(TOA_V6_LEN));
    match (kind, addr.ip()) {
        (ToaKind::Lvs | ToaKind::Tencent, IpAddr::V4(v4)) => {
            out.extend_from_slice(&[kind.kind(), TOA_V4_LEN]);
            out.extend_from_slice(&addr.port().to_be_bytes());
            out.extend_from_slice(&v4.octets());
        }
        (ToaKind::Lvs | ToaKind::Alibaba, IpAddr::V6(v6)) => {
            out.extend_from_slice(&[kind.kind(), TOA_V6_LEN]);
            out.extend_from_slice(&addr.port().to_be_bytes());
            out.extend_from_slice(&v6.octets());
        }
        _ => return Err(ToaError::WrongFamily(kind)),
    }
    Ok(out)
}

/// Find a TOA option in a TCP header's options area (the bytes after the
/// 20-byte fixed header). `Ok(None)` when the area is well formed but has no
/// TOA option.
pub fn find_in_options(options: &[u8]) -> Result<Option<Toa>, ToaError> {
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            0 => return Ok(None), // end of option list
            1 => i += 1,          // no-op
            kind => {
                let len = usize::from(*options.get(i + 1).ok_or(ToaError::BadOptions(i))?);
                if len < 2 || i + len > options.len() {
                    return Err(ToaError::BadOptions(i));
                }
                if ToaKind::from_kind(kind).is_some() {
                    return decode(&options[i..i + len]).map(Some);
                }
                i += len;
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lvs_v4() {
        let b = [254, 8, 0x1f, 0x90, 203, 0, 113, 7];
        let t = decode(&b).unwrap();
        assert_eq!(t.kind, ToaKind::Lvs);
        assert_eq!(t.addr, "203.0.113.7:8080".parse().unwrap());
        assert_eq!(encode(ToaKind::Lvs, t.addr).unwrap(), b);
    }

    #[test]
    fn tencent_and_alibaba() {
        let t = decode(&[200, 8, 0, 80, 1, 2, 3, 4]).unwrap();
        assert_eq!(
            (t.kind, t.addr.to_string().as_str()),
            (ToaKind::Tencent, "1.2.3.4:80")
        );
        let a: SocketAddr = "[2001:db8::7]:443".parse().unwrap();
        let enc = encode(ToaKind::Alibaba, a).unwrap();
        assert_eq!(enc.len(), 20);
        assert_eq!(enc[..4], [253, 20, 1, 187]);
        assert_eq!(decode(&enc).unwrap().addr, a);
        let dpvs = encode(ToaKind::Lvs, a).unwrap();
        assert_eq!(
            decode(&dpvs).unwrap(),
            Toa {
                kind: ToaKind::Lvs,
                addr: a
            }
        );
    }

    #[test]
    fn errors() {
        assert_eq!(decode(&[]), Err(ToaError::Truncated { have: 0, need: 2 }));
        assert_eq!(
            decode(&[254]),
            Err(ToaError::Truncated { have: 1, need: 2 })
        );
        assert_eq!(
            decode(&[254, 8, 0, 80]),
            Err(ToaError::Truncated { have: 4, need: 8 })
        );
        assert_eq!(decode(&[2, 4, 5, 180]), Err(ToaError::NotToa(2)));
        assert_eq!(
            decode(&[254, 9, 0, 0, 0, 0, 0, 0, 0]),
            Err(ToaError::BadLength { kind: 254, len: 9 })
        );
        assert_eq!(
            decode(&[200, 20]),
            Err(ToaError::BadLength { kind: 200, len: 20 })
        );
        assert_eq!(
            decode(&[253, 8]),
            Err(ToaError::BadLength { kind: 253, len: 8 })
        );
        assert_eq!(
            decode(&[254, 8, 0, 0, 1, 2, 3, 4]),
            Err(ToaError::Unspecified)
        );
        assert_eq!(
            decode(&[254, 8, 0, 1, 0, 0, 0, 0]),
            Err(ToaError::Unspecified)
        );
        assert_eq!(
            encode(ToaKind::Alibaba, "1.2.3.4:1".parse().unwrap()),
            Err(ToaError::WrongFamily(ToaKind::Alibaba))
        );
    }

    #[test]
    fn options_area() {
        // MSS, NOP, NOP, SACK-permitted... then TOA.
        let mut opts = vec![2, 4, 0x05, 0xb4, 1, 1, 4, 2];
        opts.extend_from_slice(&[254, 8, 0, 80, 9, 9, 9, 9]);
        assert_eq!(
            find_in_options(&opts).unwrap().unwrap().addr,
            "9.9.9.9:80".parse().unwrap()
        );
        assert_eq!(find_in_options(&[2, 4, 5, 180, 0, 254, 8]).unwrap(), None);
        assert_eq!(find_in_options(&[2, 40, 5]), Err(ToaError::BadOptions(0)));
        assert_eq!(find_in_options(&[1, 2]), Err(ToaError::BadOptions(1)));
        assert_eq!(find_in_options(&[1, 3, 1]), Err(ToaError::BadOptions(1)));
    }
}
