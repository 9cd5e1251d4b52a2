//! A client-IP field at the front of a custom TCP/UDP protocol: the client
//! writes its own address as a big-endian integer (seed
//! `000_a884b39e85fa5d84.txt`, method 2: "a big-endian unsigned field",
//! read back with inet_ntoa). IPv4 is 4 bytes; the IPv6 form is 16 bytes.
//!
//! Whoever writes the field can lie, so a server believes it only from a
//! trusted peer (a proxy that overwrites it), exactly like a header.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Which width the field has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldFormat {
    /// 4 bytes, big-endian IPv4.
    V4,
    /// 16 bytes, IPv6 in network order.
    V6,
}

impl FieldFormat {
    /// The field's size in bytes.
    pub fn len(self) -> usize {
        match self {
            FieldFormat::V4 => 4,
            FieldFormat::V6 => 16,
        }
    }

    /// Never empty; here for clippy's `len_without_is_empty`.
    pub fn is_empty(self) -> bool {
        false
    }
}

/// Why the field could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// Not enough bytes yet: `need` more are required.
    #[error("client-IP field incomplete: {need} more bytes needed")]
    Incomplete {
        /// How many more bytes.
        need: usize,
    },
    /// All zeros: an unspecified address is never a client.
    #[error("client-IP field holds the unspecified address")]
    Unspecified,
    /// The family does not match the field's format.
    #[error("address family does not match the {0:?} field")]
    WrongFamily(FieldFormat),
}

/// Read the field from the front of `buf`; returns the address and the rest.
/// IPv4-mapped IPv6 in a 16-byte field is returned as IPv4.
pub fn decode(format: FieldFormat, buf: &[u8]) -> Result<(IpAddr, &[u8]), FieldError> {
    let n = format.len();
    if buf.len() < n {
        return Err(FieldError::Incomplete {
            need: n - buf.len(),
        });
    }
    let (field, rest) = buf.split_at(n);
    let ip = match format {
        FieldFormat::V4 => IpAddr::V4(Ipv4Addr::new(field[0], field[1], field[2], field[3])),
        FieldFormat::V6 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(field);
            crate::addr::unmap(IpAddr::V6(Ipv6Addr::from(o)))
        }
    };
    if ip.is_unspecified() {
        return Err(FieldError::Unspecified);
    }
    Ok((ip, rest))
}

/// Write the field for `ip`. An IPv4 address fits the V6 form as
/// IPv4-mapped; an IPv6 address does not fit the V4 form.
pub fn encode(format: FieldFormat, ip: IpAddr) -> Result<Vec<u8>, FieldError> {
    match (format, ip) {
        (FieldFormat::V4, IpAddr::V4(v4)) => Ok(v4.octets().to_vec()),
        (FieldFormat::V6, IpAddr::V6(v6)) => Ok(v6.octets().to_vec()),
        (FieldFormat::V6, IpAddr::V4(v4)) => Ok(v4.to_ipv6_mapped().octets().to_vec()),
        (FieldFormat::V4, IpAddr::V6(_)) => Err(FieldError::WrongFamily(format)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_big_endian() {
        // 114.248.238.236 as the seed's example client, as a u32 in network order.
        let raw = 0x72f8_eeecu32.to_be_bytes();
        let (ip, rest) = decode(FieldFormat::V4, &[&raw[..], b"hello"].concat())
            .map(|(i, r)| (i, r.to_vec()))
            .unwrap();
        assert_eq!(ip.to_string(), "114.248.238.236");
        assert_eq!(rest, b"hello");
        assert_eq!(encode(FieldFormat::V4, ip).unwrap(), raw);
    }

    #[test]
    fn v6_and_mapped() {
        let ip: IpAddr = "2001:db8::9".parse().unwrap();
        let enc = encode(FieldFormat::V6, ip).unwrap();
        assert_eq!(decode(FieldFormat::V6, &enc).unwrap().0, ip);
        let v4: IpAddr = "1.2.3.4".parse().unwrap();
        let enc = encode(FieldFormat::V6, v4).unwrap();
        assert_eq!(decode(FieldFormat::V6, &enc).unwrap().0, v4);
        assert_eq!(
            encode(FieldFormat::V4, ip),
            Err(FieldError::WrongFamily(FieldFormat::V4))
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            decode(FieldFormat::V4, &[1, 2]),
            Err(FieldError::Incomplete { need: 2 })
        );
        assert_eq!(
            decode(FieldFormat::V6, &[]),
            Err(FieldError::Incomplete { need: 16 })
        );
        assert_eq!(
            decode(FieldFormat::V4, &[0; 4]),
            Err(FieldError::Unspecified)
        );
    }
}
