//! v2's type-length-values: checked once at parse time, then read without
//! copying. Every bound is checked before a byte is read.

use crate::error::Error;

/// TLV types (spec section 2.2).
pub mod tlv_type {
    /// Application-Layer Protocol Negotiation.
    pub const ALPN: u8 = 0x01;
    /// The host name the client asked for (SNI / Host).
    pub const AUTHORITY: u8 = 0x02;
    /// CRC32C of the whole header.
    pub const CRC32C: u8 = 0x03;
    /// Padding, ignored.
    pub const NOOP: u8 = 0x04;
    /// An opaque connection id, at most 128 bytes.
    pub const UNIQUE_ID: u8 = 0x05;
    /// TLS details, with sub-TLVs.
    pub const SSL: u8 = 0x20;
    /// SSL sub-TLV: TLS version.
    pub const SSL_VERSION: u8 = 0x21;
    /// SSL sub-TLV: client certificate common name.
    pub const SSL_CN: u8 = 0x22;
    /// SSL sub-TLV: cipher.
    pub const SSL_CIPHER: u8 = 0x23;
    /// SSL sub-TLV: signature algorithm.
    pub const SSL_SIG_ALG: u8 = 0x24;
    /// SSL sub-TLV: key algorithm.
    pub const SSL_KEY_ALG: u8 = 0x25;
    /// SSL sub-TLV: key exchange group.
    pub const SSL_GROUP: u8 = 0x26;
    /// SSL sub-TLV: signature scheme.
    pub const SSL_SIG_SCHEME: u8 = 0x27;
    /// SSL sub-TLV: client certificate (DER).
    pub const SSL_CLIENT_CERT: u8 = 0x28;
    /// Network namespace name.
    pub const NETNS: u8 = 0x30;
    /// Google Cloud Private Service Connect id.
    pub const GCP: u8 = 0xE0;
    /// AWS: VPC endpoint id (subtype 0x01).
    pub const AWS: u8 = 0xEA;
    /// Azure: Private Link LinkID (subtype 0x01).
    pub const AZURE: u8 = 0xEE;
}

/// The largest UNIQUE_ID value the spec allows.
pub const MAX_UNIQUE_ID: usize = 128;

/// Walk the TLV area of `header` (the whole header) from `start`, checking
/// every bound, every text TLV and the CRC32C when one is present.
pub(crate) fn validate_tlvs(header: &[u8], start: usize) -> Result<(), Error> {
    let mut i = start;
    while i < header.len() {
        let kind = header[i];
        if i + 3 > header.len() {
            return Err(Error::TlvOverrun(kind));
        }
        let len = usize::from(u16::from_be_bytes([header[i + 1], header[i + 2]]));
        let v0 = i + 3;
        if v0 + len > header.len() {
            return Err(Error::TlvOverrun(kind));
        }
        let value = &header[v0..v0 + len];
        match kind {
            tlv_type::AUTHORITY | tlv_type::NETNS => {
                std::str::from_utf8(value).map_err(|_| Error::TlvNotUtf8(kind))?;
            }
            tlv_type::CRC32C => {
                if len != 4 {
                    return Err(Error::TlvBadLength { kind, len });
                }
                let expected = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
                let mut crc = crc32c::crc32c(&header[..v0]);
                crc = crc32c::crc32c_append(crc, &[0, 0, 0, 0]);
                crc = crc32c::crc32c_append(crc, &header[v0 + 4..]);
                if crc != expected {
                    return Err(Error::CrcMismatch {
                        expected,
                        computed: crc,
                    });
                }
            }
            tlv_type::UNIQUE_ID if len > MAX_UNIQUE_ID => {
                return Err(Error::TlvBadLength { kind, len });
            }
            tlv_type::SSL => {
                if len < 5 {
                    return Err(Error::TlvBadLength { kind, len });
                }
                let mut j = 5;
                while j < len {
                    let sub = value[j];
                    if j + 3 > len {
                        return Err(Error::TlvOverrun(sub));
                    }
                    let sl = usize::from(u16::from_be_bytes([value[j + 1], value[j + 2]]));
                    if j + 3 + sl > len {
                        return Err(Error::TlvOverrun(sub));
                    }
                    j += 3 + sl;
                }
            }
            tlv_type::AWS | tlv_type::AZURE if len == 0 => {
                return Err(Error::TlvBadLength { kind, len });
            }
            _ => {}
        }
        i = v0 + len;
    }
    Ok(())
}

/// A raw type-length-value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawTlv<'a> {
    /// Type.
    pub kind: u8,
    /// Value.
    pub value: &'a [u8],
}

/// The SSL TLV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ssl<'a> {
    /// Bit field: 0x01 client connected over SSL/TLS, 0x02 sent a
    /// certificate on this connection, 0x04 on the session.
    pub client: u8,
    /// 0 when the client certificate verified.
    pub verify: u32,
    sub: &'a [u8],
}

impl<'a> Ssl<'a> {
    /// Sub-TLVs (0x21 version, 0x22 CN, 0x23 cipher, ...).
    pub fn sub_tlvs(&self) -> RawTlvs<'a> {
        RawTlvs { rest: self.sub }
    }

    /// The value of the first sub-TLV of `kind`.
    pub fn get(&self, kind: u8) -> Option<&'a [u8]> {
        self.sub_tlvs().find(|t| t.kind == kind).map(|t| t.value)
    }
}

/// Iterator over raw TLVs in a validated area.
#[derive(Debug, Clone)]
pub struct RawTlvs<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for RawTlvs<'a> {
    type Item = RawTlv<'a>;
    fn next(&mut self) -> Option<RawTlv<'a>> {
        if self.rest.len() < 3 {
            return None;
        }
        let kind = self.rest[0];
        let len = usize::from(u16::from_be_bytes([self.rest[1], self.rest[2]]));
        let end = (3 + len).min(self.rest.len());
        let value = &self.rest[3..end];
        self.rest = &self.rest[end..];
        Some(RawTlv { kind, value })
    }
}

/// A decoded TLV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tlv<'a> {
    /// 0x01.
    Alpn(&'a [u8]),
    /// 0x02.
    Authority(&'a str),
    /// 0x03 (already verified).
    Crc32c(u32),
    /// 0x04.
    Noop(&'a [u8]),
    /// 0x05.
    UniqueId(&'a [u8]),
    /// 0x20.
    Ssl(Ssl<'a>),
    /// 0x30.
    Netns(&'a str),
    /// 0xEA: subtype 0x01 carries the VPC endpoint id.
    Aws {
        /// Subtype.
        subtype: u8,
        /// The rest.
        value: &'a [u8],
    },
    /// 0xEE: subtype 0x01 carries the LinkID, a little-endian u32.
    Azure {
        /// Subtype.
        subtype: u8,
        /// The rest.
        value: &'a [u8],
    },
    /// 0xE0 with 8 bytes: the PSC connection id (big-endian).
    Gcp {
        /// The id.
        psc_connection_id: u64,
    },
    /// Anything else, kept raw.
    Unknown {
        /// Type.
        kind: u8,
        /// Value.
        value: &'a [u8],
    },
}

impl Tlv<'_> {
    /// Azure's LinkID, when this is an Azure LinkID TLV.
    pub fn azure_link_id(&self) -> Option<u32> {
        match self {
            Tlv::Azure {
                subtype: 0x01,
                value,
            } if value.len() == 4 => {
                Some(u32::from_le_bytes([value[0], value[1], value[2], value[3]]))
            }
            _ => None,
        }
    }

    /// AWS's VPC endpoint id, when this is one.
    pub fn aws_vpce_id(&self) -> Option<&str> {
        match self {
            Tlv::Aws {
                subtype: 0x01,
                value,
            } => std::str::from_utf8(value).ok(),
            _ => None,
        }
    }
}

/// Iterator over a header's TLVs.
#[derive(Debug, Clone)]
pub struct Tlvs<'a> {
    rest: &'a [u8],
}

impl<'a> Tlvs<'a> {
    /// Over a TLV area [`validate_tlvs`] has checked.
    pub(crate) fn new(area: &'a [u8]) -> Self {
        Tlvs { rest: area }
    }
}

impl<'a> Iterator for Tlvs<'a> {
    type Item = Tlv<'a>;
    fn next(&mut self) -> Option<Tlv<'a>> {
        let raw = RawTlvs { rest: self.rest }.next()?;
        self.rest = &self.rest[(3 + raw.value.len()).min(self.rest.len())..];
        let v = raw.value;
        // Validation already ran; the fallbacks below keep this total
        // without trusting that.
        Some(match raw.kind {
            tlv_type::ALPN => Tlv::Alpn(v),
            tlv_type::AUTHORITY => match std::str::from_utf8(v) {
                Ok(s) => Tlv::Authority(s),
                Err(_) => Tlv::Unknown {
                    kind: raw.kind,
                    value: v,
                },
            },
            tlv_type::CRC32C if v.len() == 4 => {
                Tlv::Crc32c(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
            }
            tlv_type::NOOP => Tlv::Noop(v),
            tlv_type::UNIQUE_ID => Tlv::UniqueId(v),
            tlv_type::SSL if v.len() >= 5 => Tlv::Ssl(Ssl {
                client: v[0],
                verify: u32::from_be_bytes([v[1], v[2], v[3], v[4]]),
                sub: &v[5..],
            }),
            tlv_type::NETNS => match std::str::from_utf8(v) {
                Ok(s) => Tlv::Netns(s),
                Err(_) => Tlv::Unknown {
                    kind: raw.kind,
                    value: v,
                },
            },
            tlv_type::AWS if !v.is_empty() => Tlv::Aws {
                subtype: v[0],
                value: &v[1..],
            },
            tlv_type::AZURE if !v.is_empty() => Tlv::Azure {
                subtype: v[0],
                value: &v[1..],
            },
            tlv_type::GCP if v.len() == 8 => Tlv::Gcp {
                psc_connection_id: u64::from_be_bytes([
                    v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7],
                ]),
            },
            kind => Tlv::Unknown { kind, value: v },
        })
    }
}
