//! The text version: one CRLF-terminated line of at most 107 bytes.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use crate::detect::{detect, Detect, V1_MAX_LEN, V1_PREFIX};
use crate::error::Error;
use crate::header::{Addresses, Command, Header, Parsed, Transport, Version};

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
