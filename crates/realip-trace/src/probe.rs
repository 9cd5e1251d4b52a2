//! The packet to trace: what the user typed, parsed strictly, and the
//! one packet made from it (a TCP SYN, a UDP datagram or an SCTP INIT),
//! checksummed as the kernel's conntrack wants it. Pure.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

/// The transport protocols a Service port can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP: the packet is a SYN.
    Tcp,
    /// UDP: one datagram.
    Udp,
    /// SCTP: an INIT chunk.
    Sctp,
}

impl Proto {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
        }
    }

    /// `tcp`, `udp` or `sctp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

impl std::str::FromStr for Proto {
    type Err = ProbeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "sctp" => Ok(Proto::Sctp),
            _ => Err(ProbeError::Proto(s.to_string())),
        }
    }
}

/// Why the packet could not be made from the arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// SRC is not an address.
    #[error("SRC {0:?} is not an IP address or IP:PORT (e.g. 203.0.113.7, 203.0.113.7:40000 or [2001:db8::7]:40000)")]
    Source(String),
    /// DST is not ADDR:PORT.
    #[error(
        "DST {0:?} is not IP:PORT (e.g. 10.96.0.10:80 or [fd00:96::10]:80); the port is required"
    )]
    Destination(String),
    /// Port 0 cannot be traced: no Service has it, and conntrack keys on it.
    #[error("{0} port 0 is not a port a packet can carry to a Service; give 1-65535")]
    PortZero(&'static str),
    /// Mixed families.
    #[error("SRC {src} and DST {dst} are of different address families")]
    Families {
        /// The source.
        src: IpAddr,
        /// The destination.
        dst: IpAddr,
    },
    /// An address no packet can come from or go to.
    #[error("{what} {ip} cannot be traced: {why}")]
    Unusable {
        /// SRC or DST.
        what: &'static str,
        /// The address.
        ip: IpAddr,
        /// Why.
        why: &'static str,
    },
    /// Not tcp, udp or sctp.
    #[error("--proto {0:?}: give tcp, udp or sctp")]
    Proto(String),
}

/// Where the packet comes from: the client, as the packet's source says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Source(pub SocketAddr);

/// What the client dialled: a Service's cluster IP, a node port, an
/// external or LB IP, or anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Destination(pub SocketAddr);

/// The packet to trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// Its protocol.
    pub proto: Proto,
    /// Its source (the port is ours to choose unless SRC named one).
    pub src: Source,
    /// Its destination.
    pub dst: Destination,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} -> {}",
            self.proto.as_str(),
            self.src.0,
            self.dst.0
        )
    }
}

fn usable(what: &'static str, ip: IpAddr) -> Result<(), ProbeError> {
    let why = if ip.is_unspecified() {
        Some("it is the unspecified address")
    } else if ip.is_multicast() {
        Some("it is a multicast address")
    } else if matches!(ip, IpAddr::V4(v) if v.is_broadcast()) {
        Some("it is the broadcast address")
    } else {
        None
    };
    match why {
        Some(why) => Err(ProbeError::Unusable { what, ip, why }),
        None => Ok(()),
    }
}

/// SRC: `IP` or `IP:PORT` (`[v6]:PORT`). `None` for the port: ours to
/// choose.
pub fn parse_source(s: &str) -> Result<(IpAddr, Option<u16>), ProbeError> {
    let s = s.trim();
    let (ip, port) = if let Ok(ip) = s.parse::<IpAddr>() {
        (ip, None)
    } else if let Ok(sa) = s.parse::<SocketAddr>() {
        if sa.port() == 0 {
            return Err(ProbeError::PortZero("SRC"));
        }
        (sa.ip(), Some(sa.port()))
    } else {
        return Err(ProbeError::Source(s.to_string()));
    };
    usable("SRC", ip)?;
    Ok((ip, port))
}

/// DST: `IP:PORT` (`[v6]:PORT`).
pub fn parse_destination(s: &str) -> Result<SocketAddr, ProbeError> {
    let sa: SocketAddr = s
        .trim()
        .parse()
        .map_err(|_| ProbeError::Destination(s.to_string()))?;
    if sa.port() == 0 {
        return Err(ProbeError::PortZero("DST"));
    }
    usable("DST", sa.ip())?;
    Ok(sa)
}

/// A source port from the ephemeral range that no earlier trace of this
/// process used: a new port means a new conntrack entry, so the NAT rules
/// see the packet (they see only a connection's first).
pub fn fresh_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mix = t ^ std::process::id().rotate_left(16) ^ N.fetch_add(7919, Ordering::Relaxed);
    32768 + (mix % 28232) as u16
}

impl Probe {
    /// The packet from the parsed arguments.
    pub fn new(
        proto: Proto,
        src: (IpAddr, Option<u16>),
        dst: SocketAddr,
    ) -> Result<Probe, ProbeError> {
        if src.0.is_ipv4() != dst.is_ipv4() {
            return Err(ProbeError::Families {
                src: src.0,
                dst: dst.ip(),
            });
        }
        Ok(Probe {
            proto,
            src: Source(SocketAddr::new(src.0, src.1.unwrap_or_else(fresh_port))),
            dst: Destination(dst),
        })
    }

    /// The 5-tuple as realip-nft matches and reads it.
    pub fn five_tuple(&self) -> realip_nft::FiveTuple {
        realip_nft::FiveTuple {
            src: self.src.0.ip(),
            dst: self.dst.0.ip(),
            proto: self.proto.number(),
            sport: self.src.0.port(),
            dport: self.dst.0.port(),
        }
    }

    /// The transport header (and payload) of the one packet sent: the
    /// kernel adds the IP header.
    pub fn transport_bytes(&self) -> Vec<u8> {
        let (sp, dp) = (self.src.0.port(), self.dst.0.port());
        let mut b = Vec::new();
        match self.proto {
            Proto::Tcp => {
                b.extend_from_slice(&sp.to_be_bytes());
                b.extend_from_slice(&dp.to_be_bytes());
                b.extend_from_slice(&0x5245_414cu32.to_be_bytes()); // sequence: "REAL"
                b.extend_from_slice(&0u32.to_be_bytes()); // ack
                b.extend_from_slice(&[0x50, 0x02]); // 20 bytes, SYN
                b.extend_from_slice(&64240u16.to_be_bytes()); // window
                b.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
                let c = self.l4_checksum(&b);
                b[16..18].copy_from_slice(&c.to_be_bytes());
            }
            Proto::Udp => {
                let payload = b"realip node trace\n";
                b.extend_from_slice(&sp.to_be_bytes());
                b.extend_from_slice(&dp.to_be_bytes());
                b.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
                b.extend_from_slice(&[0, 0]);
                b.extend_from_slice(payload);
                let c = match self.l4_checksum(&b) {
                    0 => 0xffff,
                    c => c,
                };
                b[6..8].copy_from_slice(&c.to_be_bytes());
            }
            Proto::Sctp => {
                b.extend_from_slice(&sp.to_be_bytes());
                b.extend_from_slice(&dp.to_be_bytes());
                b.extend_from_slice(&0u32.to_be_bytes()); // an INIT's verification tag is 0
                b.extend_from_slice(&0u32.to_be_bytes()); // checksum
                b.extend_from_slice(&[1, 0]); // INIT, no flags
                b.extend_from_slice(&20u16.to_be_bytes());
                b.extend_from_slice(&0x5245_414cu32.to_be_bytes()); // initiate tag
                b.extend_from_slice(&65535u32.to_be_bytes()); // a_rwnd
                b.extend_from_slice(&1u16.to_be_bytes()); // outbound streams
                b.extend_from_slice(&1u16.to_be_bytes()); // inbound streams
                b.extend_from_slice(&1u32.to_be_bytes()); // initial TSN
                                                          // RFC 9260 appendix A: CRC32c over the packet with the
                                                          // field zeroed, stored as Linux stores it (little-endian).
                let c = crc32c::crc32c(&b);
                b[8..12].copy_from_slice(&c.to_le_bytes());
            }
        }
        b
    }

    /// The internet checksum over the pseudo-header and `seg`.
    fn l4_checksum(&self, seg: &[u8]) -> u16 {
        let mut pseudo = Vec::new();
        match (self.src.0.ip(), self.dst.0.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                pseudo.extend_from_slice(&s.octets());
                pseudo.extend_from_slice(&d.octets());
                pseudo.extend_from_slice(&[0, self.proto.number()]);
                pseudo.extend_from_slice(&(seg.len() as u16).to_be_bytes());
            }
            (s, d) => {
                let six = |a: IpAddr| match a {
                    IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
                    IpAddr::V6(v) => v.octets(),
                };
                pseudo.extend_from_slice(&six(s));
                pseudo.extend_from_slice(&six(d));
                pseudo.extend_from_slice(&(seg.len() as u32).to_be_bytes());
                pseudo.extend_from_slice(&[0, 0, 0, self.proto.number()]);
            }
        }
        let mut sum: u32 = 0;
        for chunk in pseudo.chunks(2).chain(seg.chunks(2)) {
            let word = match chunk {
                [a, b] => u16::from_be_bytes([*a, *b]),
                [a] => u16::from_be_bytes([*a, 0]),
                _ => 0,
            };
            sum += u32::from(word);
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_parsed_strictly() {
        assert_eq!(
            parse_source("203.0.113.7").unwrap(),
            ("203.0.113.7".parse().unwrap(), None)
        );
        assert_eq!(
            parse_source("[2001:db8::7]:40000").unwrap(),
            ("2001:db8::7".parse().unwrap(), Some(40000))
        );
        for bad in [
            "",
            "203.0.113",
            "203.0.113.7:",
            "host:80",
            "203.0.113.7:99999",
        ] {
            assert!(
                matches!(parse_source(bad), Err(ProbeError::Source(_))),
                "{bad}"
            );
        }
        assert_eq!(
            parse_source("203.0.113.7:0"),
            Err(ProbeError::PortZero("SRC"))
        );
        assert!(matches!(
            parse_source("0.0.0.0"),
            Err(ProbeError::Unusable { .. })
        ));
        assert!(matches!(
            parse_source("224.0.0.1"),
            Err(ProbeError::Unusable { .. })
        ));
        assert_eq!(
            parse_destination("10.96.0.10:80").unwrap(),
            "10.96.0.10:80".parse().unwrap()
        );
        for bad in ["10.96.0.10", "10.96.0.10:http", "fd00::1:80", "[fd00::1]"] {
            assert!(
                matches!(parse_destination(bad), Err(ProbeError::Destination(_))),
                "{bad}"
            );
        }
        assert_eq!(
            parse_destination("10.96.0.10:0"),
            Err(ProbeError::PortZero("DST"))
        );
        assert!(matches!(
            Probe::new(
                Proto::Tcp,
                parse_source("2001:db8::7").unwrap(),
                "10.96.0.10:80".parse().unwrap()
            ),
            Err(ProbeError::Families { .. })
        ));
        assert_eq!("sctp".parse::<Proto>(), Ok(Proto::Sctp));
        assert!("icmp".parse::<Proto>().is_err());
    }

    /// A checksum over a segment that carries its own checksum folds to 0.
    fn verifies(p: &Probe, seg: &[u8]) -> bool {
        p.l4_checksum(seg) == 0
    }

    #[test]
    fn packets_carry_checksums_the_kernel_accepts() {
        for (src, dst) in [
            ("203.0.113.7:40000", "10.0.0.11:30080"),
            ("[2001:db8::7]:40000", "[fd00::11]:30080"),
        ] {
            let s: SocketAddr = src.parse().unwrap();
            for proto in [Proto::Tcp, Proto::Udp] {
                let p = Probe::new(proto, (s.ip(), Some(s.port())), dst.parse().unwrap()).unwrap();
                let seg = p.transport_bytes();
                assert!(verifies(&p, &seg), "{p}");
                assert_eq!(&seg[..4], &[0x9c, 0x40, 0x75, 0x80]);
            }
        }
        let p = Probe::new(
            Proto::Sctp,
            ("203.0.113.7".parse().unwrap(), Some(5000)),
            "10.0.0.11:30080".parse().unwrap(),
        )
        .unwrap();
        let mut seg = p.transport_bytes();
        let stored = u32::from_le_bytes([seg[8], seg[9], seg[10], seg[11]]);
        seg[8..12].copy_from_slice(&[0; 4]);
        assert_eq!(stored, crc32c::crc32c(&seg));
        assert_eq!(seg.len(), 32);
    }

    #[test]
    fn fresh_ports_are_ephemeral() {
        for _ in 0..100 {
            assert!((32768..=60999).contains(&fresh_port()));
        }
    }
}
