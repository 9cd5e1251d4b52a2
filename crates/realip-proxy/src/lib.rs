//! realip-proxy: the PROXY protocol v1/v2 wire codec (haproxy
//! `doc/proxy-protocol.txt`).
//!
//! Parsing is incremental ([`Parsed::Incomplete`] says how many more bytes
//! are needed; an error says the bytes can never become a header) and
//! bounded (v1 never looks past 107 bytes, v2 never past `16 + len`, and
//! `len` is capped by [`ParseConfig::max_v2_len`]). The parsed [`Header`]
//! borrows its TLVs from the input: parsing allocates nothing.
//!
//! What this crate must not do: I/O, `unsafe`, panics on any input, reading
//! past the declared length, or deciding whether a header *should* be there
//! (configuration decides; the spec forbids guessing).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// The v2 signature.
pub const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
/// The v1 prefix.
pub const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// The longest v1 header, CRLF included (the spec's worst case).
pub const V1_MAX_LEN: usize = 107;
/// The fixed part of a v2 header.
pub const V2_PREAMBLE: usize = 16;

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

/// Why bytes are not, and can never become, a valid header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Neither the v1 prefix nor the v2 signature.
    #[error("not a PROXY protocol header")]
    NotProxy,
    /// No CRLF within 107 bytes.
    #[error("PROXY v1: no CRLF within {V1_MAX_LEN} bytes")]
    V1TooLong,
    /// A CR or LF that is not part of the final CRLF.
    #[error("PROXY v1: a bare CR or LF")]
    V1BareCrLf,
    /// The line's shape is wrong.
    #[error("PROXY v1: {0}")]
    V1Malformed(&'static str),
    /// An address that does not parse, or of the wrong family.
    #[error("PROXY v1: {0} address is not a valid {1} address")]
    V1BadAddress(&'static str, &'static str),
    /// A port that is not 0-65535 without leading zeros.
    #[error("PROXY v1: {0} port is not a number from 0 to 65535 without leading zeros")]
    V1BadPort(&'static str),
    /// Version nibble is not 2.
    #[error("PROXY v2: version {0} (only 2 exists)")]
    V2Version(u8),
    /// Command nibble is not LOCAL or PROXY.
    #[error("PROXY v2: command {0} (expected 0 LOCAL or 1 PROXY)")]
    V2Command(u8),
    /// Family nibble out of range.
    #[error("PROXY v2: address family {0} (expected 0-3)")]
    V2Family(u8),
    /// Transport nibble out of range.
    #[error("PROXY v2: transport {0} (expected 0-2)")]
    V2Transport(u8),
    /// `len` over the configured cap.
    #[error("PROXY v2: length {len} over the limit of {max}")]
    V2TooLong {
        /// Declared.
        len: u16,
        /// Allowed.
        max: u16,
    },
    /// `len` smaller than the family's address block.
    #[error("PROXY v2: length {len} shorter than the {need}-byte address block")]
    V2ShortAddress {
        /// Declared.
        len: u16,
        /// Needed.
        need: u16,
    },
    /// A TLV runs past the header's end.
    #[error("PROXY v2: TLV 0x{0:02x} runs past the end of the header")]
    TlvOverrun(u8),
    /// A TLV with a length its type does not allow.
    #[error("PROXY v2: TLV 0x{kind:02x} has a bad length {len}")]
    TlvBadLength {
        /// Type.
        kind: u8,
        /// Length.
        len: usize,
    },
    /// A text TLV that is not UTF-8.
    #[error("PROXY v2: TLV 0x{0:02x} is not UTF-8")]
    TlvNotUtf8(u8),
    /// The CRC32C does not match.
    #[error("PROXY v2: CRC32C mismatch (header says {expected:08x}, computed {computed:08x})")]
    CrcMismatch {
        /// From the TLV.
        expected: u32,
        /// Over the header.
        computed: u32,
    },
}

/// Why a header cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// v1 carries only TCP over IPv4/IPv6 (or UNKNOWN).
    #[error("PROXY v1 cannot carry {0}")]
    V1Unsupported(&'static str),
    /// The TLVs make the header longer than 65535 bytes.
    #[error("PROXY v2 header would be {0} bytes, over 65535")]
    TooLong(usize),
    /// A TLV value too long for its type.
    #[error("TLV 0x{kind:02x} value of {len} bytes is too long")]
    TlvTooLong {
        /// Type.
        kind: u8,
        /// Length.
        len: usize,
    },
}

/// What the first bytes look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detect {
    /// The v1 prefix.
    V1,
    /// The v2 signature.
    V2,
    /// Neither, and more bytes will not change that.
    Neither,
    /// Consistent with a header so far; this many more bytes decide.
    NeedMore(usize),
}

/// Tell v1 from v2 from neither.
pub fn detect(buf: &[u8]) -> Detect {
    let (want, is_v1): (&[u8], bool) = match buf.first() {
        None => return Detect::NeedMore(1),
        Some(b'P') => (V1_PREFIX, true),
        Some(0x0D) => (&SIGNATURE, false),
        Some(_) => return Detect::Neither,
    };
    let n = buf.len().min(want.len());
    if buf[..n] != want[..n] {
        return Detect::Neither;
    }
    if n < want.len() {
        return Detect::NeedMore(want.len() - n);
    }
    if is_v1 {
        Detect::V1
    } else {
        Detect::V2
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
    tlvs: &'a [u8],
    len: usize,
}

impl<'a> Header<'a> {
    /// Bytes the header occupies at the front of the input.
    pub fn header_len(&self) -> usize {
        self.len
    }

    /// The TLVs, in order (already validated).
    pub fn tlvs(&self) -> Tlvs<'a> {
        Tlvs { rest: self.tlvs }
    }

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

/// Parse either version, whichever the bytes start with.
pub fn parse<'a>(buf: &'a [u8], cfg: &ParseConfig) -> Result<Parsed<'a>, Error> {
    match detect(buf) {
        Detect::V1 => parse_v1(buf),
        Detect::V2 => parse_v2(buf, cfg),
        Detect::NeedMore(n) => Ok(Parsed::Incomplete { needed: n }),
        Detect::Neither => Err(Error::NotProxy),
    }
}

// ----------------------------------------------------------------- v1

/// Parse a v1 header.
pub fn parse_v1(buf: &[u8]) -> Result<Parsed<'_>, Error> {
    match detect(buf) {
        Detect::V1 => {}
        Detect::NeedMore(n) if buf.first() != Some(&0x0D) => {
            return Ok(Parsed::Incomplete { needed: n })
        }
        _ => return Err(Error::NotProxy),
    }
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let mut end = None;
    for (i, &b) in window.iter().enumerate() {
        match b {
            b'\r' => match window.get(i + 1) {
                Some(b'\n') => {
                    end = Some(i);
                    break;
                }
                Some(_) => return Err(Error::V1BareCrLf),
                None => {}
            },
            b'\n' => return Err(Error::V1BareCrLf),
            0x20..=0x7e => {}
            _ => return Err(Error::V1Malformed("a byte that is not printable ASCII")),
        }
    }
    let Some(end) = end else {
        if window.len() >= V1_MAX_LEN {
            return Err(Error::V1TooLong);
        }
        return Ok(Parsed::Incomplete { needed: 1 });
    };
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..end])
        .map_err(|_| Error::V1Malformed("not ASCII"))?;
    let len = end + 2;
    let mut parts = line.split(' ');
    let proto = parts.next().unwrap_or("");
    let unknown = |len| {
        Ok(Parsed::Complete(Header {
            version: Version::V1,
            command: Command::Proxy,
            transport: Transport::Unspec,
            addresses: Addresses::Unspec,
            tlvs: &[],
            len,
        }))
    };
    let v6 = match proto {
        // Anything may follow UNKNOWN; the receiver ignores it.
        "UNKNOWN" => return unknown(len),
        "TCP4" => false,
        "TCP6" => true,
        _ => return Err(Error::V1Malformed("protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let fields: [&str; 4] = [
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    ];
    if parts.next().is_some() {
        return Err(Error::V1Malformed("too many fields"));
    }
    let sport = v1_port(fields[2], "source")?;
    let dport = v1_port(fields[3], "destination")?;
    let addresses = if v6 {
        let s: Ipv6Addr = fields[0]
            .parse()
            .map_err(|_| Error::V1BadAddress("source", "IPv6"))?;
        let d: Ipv6Addr = fields[1]
            .parse()
            .map_err(|_| Error::V1BadAddress("destination", "IPv6"))?;
        Addresses::Ipv6 {
            src: SocketAddrV6::new(s, sport, 0, 0),
            dst: SocketAddrV6::new(d, dport, 0, 0),
        }
    } else {
        let s: Ipv4Addr = fields[0]
            .parse()
            .map_err(|_| Error::V1BadAddress("source", "IPv4"))?;
        let d: Ipv4Addr = fields[1]
            .parse()
            .map_err(|_| Error::V1BadAddress("destination", "IPv4"))?;
        Addresses::Ipv4 {
            src: SocketAddrV4::new(s, sport),
            dst: SocketAddrV4::new(d, dport),
        }
    };
    Ok(Parsed::Complete(Header {
        version: Version::V1,
        command: Command::Proxy,
        transport: Transport::Stream,
        addresses,
        tlvs: &[],
        len,
    }))
}

fn v1_port(s: &str, which: &'static str) -> Result<u16, Error> {
    let ok = !s.is_empty()
        && s.len() <= 5
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if !ok {
        return Err(Error::V1BadPort(which));
    }
    s.parse::<u16>().map_err(|_| Error::V1BadPort(which))
}

// ----------------------------------------------------------------- v2

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
    let need = match family {
        1 => 12u16,
        2 => 36,
        3 => 216,
        _ => 0,
    };
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
    if command == Command::Local || family == 0 {
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
        1 => Addresses::Ipv4 {
            src: SocketAddrV4::new(
                Ipv4Addr::new(body[0], body[1], body[2], body[3]),
                u16::from_be_bytes([body[8], body[9]]),
            ),
            dst: SocketAddrV4::new(
                Ipv4Addr::new(body[4], body[5], body[6], body[7]),
                u16::from_be_bytes([body[10], body[11]]),
            ),
        },
        2 => {
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
        _ => {
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

fn check_fam_proto(b: u8) -> Result<(u8, Transport), Error> {
    let fam = b >> 4;
    if fam > 3 {
        return Err(Error::V2Family(fam));
    }
    let t = match b & 0x0f {
        0 => Transport::Unspec,
        1 => Transport::Stream,
        2 => Transport::Dgram,
        t => return Err(Error::V2Transport(t)),
    };
    Ok((fam, t))
}

/// Walk the TLV area of `header` (the whole header) from `start`, checking
/// every bound, every text TLV and the CRC32C when one is present.
fn validate_tlvs(header: &[u8], start: usize) -> Result<(), Error> {
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

/// Iterator over a header's TLVs.
#[derive(Debug, Clone)]
pub struct Tlvs<'a> {
    rest: &'a [u8],
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

// ------------------------------------------------------------ encoding

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
    let fam = match h.addresses {
        Addresses::Unspec => 0,
        Addresses::Ipv4 { .. } => 1,
        Addresses::Ipv6 { .. } => 2,
        Addresses::Unix { .. } => 3,
    };
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

#[cfg(test)]
mod tests;
