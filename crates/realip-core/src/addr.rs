//! Addresses as they appear in headers and on sockets, parsed strictly.
//!
//! One parser serves X-Forwarded-For entries, X-Real-IP values, Forwarded
//! `for=` nodes and command-line arguments, so every place agrees on what an
//! address is: `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]:443`, a bare
//! `2001:db8::1`, or a zoned `fe80::1%eth0`. IPv4-mapped IPv6 is unmapped, so
//! `::ffff:10.0.0.1` matches `10.0.0.0/8` exactly as nginx does, zoned or not.
//!
//! A zone is kept for display only: every judgement (trusted, private,
//! public) is made on [`Addr::ip`] alone, so `fe80::1%eth0` is link-local
//! like `fe80::1`. A zone names an interface on the machine that wrote it
//! (RFC 4007 section 6, RFC 6874): it says nothing about where the address
//! lives, so it must neither earn nor lose trust.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// Longest address text we look at. The longest legal form is
/// `[ffff:...:ffff%<zone>]:65535` (41 + 1 + zone + 7). Anything longer is
/// garbage, and refusing it early bounds the work an attacker can ask for.
pub const MAX_ADDR_LEN: usize = 96;

/// Longest IPv6 zone identifier kept. Interface names are at most 15 bytes
/// (IFNAMSIZ); numeric zones are shorter still.
pub const MAX_ZONE_LEN: usize = 32;

/// Why a piece of text is not an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// Nothing to parse.
    #[error("empty address")]
    Empty,
    /// Longer than [`MAX_ADDR_LEN`].
    #[error("address text longer than {MAX_ADDR_LEN} bytes")]
    TooLong,
    /// Not an IPv4 or IPv6 address.
    #[error("not an IP address")]
    NotAnIp,
    /// `0.0.0.0` or `::`: never a real peer.
    #[error("unspecified address (0.0.0.0 or ::) is never a client")]
    Unspecified,
    /// The port is not a number from 1 to 65535.
    #[error("port is not a number from 1 to 65535")]
    BadPort,
    /// `[` without `]`, or text after `]` that is not `:port`.
    #[error("malformed brackets around an IPv6 address")]
    BadBrackets,
    /// A zone on an IPv4 address, an empty zone, or one with odd characters.
    #[error("malformed IPv6 zone (expected fe80::1%eth0)")]
    BadZone,
    /// Bytes that are not UTF-8.
    #[error("address text is not UTF-8")]
    NotUtf8,
}

/// An address read from text: the IP, an optional port, and an optional IPv6
/// zone. The zone is shown but never judged: trust looks at `ip` only.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Addr {
    /// The IP, with IPv4-mapped IPv6 already unmapped.
    pub ip: IpAddr,
    /// The port, when the text carried one.
    pub port: Option<u16>,
    /// The IPv6 zone (`eth0` in `fe80::1%eth0`), when present. Never set
    /// on an IPv4 `ip`: IPv4 has no zones, so unmapping drops it.
    pub zone: Option<Box<str>>,
}

impl Addr {
    /// An address with no port and no zone.
    pub fn ip(ip: IpAddr) -> Self {
        Addr {
            ip: unmap(ip),
            port: None,
            zone: None,
        }
    }

    /// An address from a socket address. A socket's scope id is not a zone
    /// name, so it is dropped; IPv4-mapped IPv6 is unmapped.
    pub fn from_socket(sa: SocketAddr) -> Self {
        Addr {
            ip: unmap(sa.ip()),
            port: if sa.port() == 0 {
                None
            } else {
                Some(sa.port())
            },
            zone: None,
        }
    }

    /// Parse address text; see the module documentation for the forms.
    pub fn parse(text: &str) -> Result<Self, AddrError> {
        parse(text)
    }

    /// Parse bytes read from the network (header values are bytes).
    #[inline]
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, AddrError> {
        // Most entries in a forwarding header are plain IPv4: take them
        // without the general parser; anything else goes the long way.
        if let Some(a) = fast_v4(bytes) {
            return Ok(a);
        }
        if bytes.len() > MAX_ADDR_LEN {
            return Err(AddrError::TooLong);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| AddrError::NotUtf8)?;
        parse(text)
    }
}

impl FromStr for Addr {
    type Err = AddrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.ip, self.port, &self.zone) {
            (IpAddr::V4(ip), Some(p), _) => write!(f, "{ip}:{p}"),
            (IpAddr::V4(ip), None, _) => write!(f, "{ip}"),
            (IpAddr::V6(ip), Some(p), Some(z)) => write!(f, "[{ip}%{z}]:{p}"),
            (IpAddr::V6(ip), Some(p), None) => write!(f, "[{ip}]:{p}"),
            (IpAddr::V6(ip), None, Some(z)) => write!(f, "{ip}%{z}"),
            (IpAddr::V6(ip), None, None) => write!(f, "{ip}"),
        }
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes IPv4, so trust ranges written
/// for IPv4 match dual-stack sockets too.
#[inline]
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// `a.b.c.d` or `a.b.c.d:port`, exactly as [`parse`] would accept them
/// (no leading zeros, octets up to 255, port 1-65535, not 0.0.0.0), or
/// `None` to send the text through [`parse`] for the answer or the error.
#[inline]
pub(crate) fn fast_v4(b: &[u8]) -> Option<Addr> {
    let (ip, port) = fast_v4_parts(b)?;
    Some(Addr {
        ip: IpAddr::V4(ip),
        port,
        zone: None,
    })
}

/// [`fast_v4`]'s address and port, without building an [`Addr`].
#[inline]
pub(crate) fn fast_v4_parts(b: &[u8]) -> Option<(std::net::Ipv4Addr, Option<u16>)> {
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (n, octet) in octets.iter_mut().enumerate() {
        let start = i;
        let mut v: u32 = 0;
        while i < b.len() && b[i].is_ascii_digit() && i - start < 3 {
            v = v * 10 + u32::from(b[i] - b'0');
            i += 1;
        }
        let len = i - start;
        if len == 0 || v > 255 || (len > 1 && b[start] == b'0') {
            return None;
        }
        *octet = v as u8;
        if n < 3 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
    }
    let port = match b.get(i) {
        None => None,
        Some(b':') => {
            let p = &b[i + 1..];
            if p.is_empty() || p.len() > 5 || !p.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let v = p.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
            if !(1..=65535).contains(&v) {
                return None;
            }
            Some(v as u16)
        }
        Some(_) => return None,
    };
    let ip = std::net::Ipv4Addr::from(octets);
    if ip.is_unspecified() {
        return None;
    }
    Some((ip, port))
}

/// The plain-IPv4 entry that ends at `end` in a list header value, read
/// backwards: its start, address and port, exactly as [`fast_v4_parts`]
/// would read the token, when the token is one (it must start `v` or follow
/// a separator). Finding the token's start and parsing it is then one pass.
/// `None` sends the caller the long way (scan for the start, then the
/// general parser), so declining is always safe.
#[inline]
pub(crate) fn rev_v4(
    v: &[u8],
    end: usize,
    is_sep: impl Fn(u8) -> bool,
) -> Option<(usize, std::net::Ipv4Addr, Option<u16>)> {
    // Digits ending at `i` (at most `max`): their value, their count, and
    // whether the first of them is a leading zero.
    let digits = |mut i: usize, max: usize| -> (usize, u32, usize) {
        let (mut value, mut scale, mut n) = (0u32, 1u32, 0usize);
        while i > 0 && n < max && v[i - 1].is_ascii_digit() {
            value += u32::from(v[i - 1] - b'0') * scale;
            scale *= 10;
            n += 1;
            i -= 1;
        }
        (i, value, n)
    };
    let mut i = end;
    let (j, value, n) = digits(i, 5);
    if n == 0 {
        return None;
    }
    i = j;
    let mut port = None;
    let last = if i > 0 && v[i - 1] == b':' {
        if !(1..=65535).contains(&value) {
            return None;
        }
        port = Some(value as u16);
        i -= 1;
        let (j, value, n) = digits(i, 4);
        if n == 0 || n > 3 || value > 255 || (n > 1 && v[j] == b'0') {
            return None;
        }
        i = j;
        value
    } else {
        if n > 3 || value > 255 || (n > 1 && v[i] == b'0') {
            return None;
        }
        value
    };
    let mut octets = [0u8, 0, 0, last as u8];
    for k in (0..3).rev() {
        if i == 0 || v[i - 1] != b'.' {
            return None;
        }
        i -= 1;
        let (j, value, n) = digits(i, 4);
        if n == 0 || n > 3 || value > 255 || (n > 1 && v[j] == b'0') {
            return None;
        }
        octets[k] = value as u8;
        i = j;
    }
    if i > 0 && !is_sep(v[i - 1]) {
        return None;
    }
    let ip = std::net::Ipv4Addr::from(octets);
    if ip.is_unspecified() {
        return None;
    }
    Some((i, ip, port))
}

fn parse(text: &str) -> Result<Addr, AddrError> {
    let text = text.trim_matches(|c| c == ' ' || c == '\t');
    if text.is_empty() {
        return Err(AddrError::Empty);
    }
    if text.len() > MAX_ADDR_LEN {
        return Err(AddrError::TooLong);
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let close = rest.find(']').ok_or(AddrError::BadBrackets)?;
        let host = &rest[..close];
        let after = &rest[close + 1..];
        let port = if after.is_empty() {
            None
        } else {
            let p = after.strip_prefix(':').ok_or(AddrError::BadBrackets)?;
            Some(parse_port(p)?)
        };
        let (ip, zone) = parse_v6_zoned(host)?;
        return finish(IpAddr::V6(ip), port, zone);
    } else {
        match text.bytes().filter(|&b| b == b':').count() {
            // Bare IPv4 (or garbage).
            0 => (text, None),
            // IPv4 with a port.
            1 => {
                let (h, p) = text.split_once(':').ok_or(AddrError::NotAnIp)?;
                (h, Some(parse_port(p)?))
            }
            // Bare IPv6: a port would need brackets.
            _ => {
                let (ip, zone) = parse_v6_zoned(text)?;
                return finish(IpAddr::V6(ip), None, zone);
            }
        }
    };
    if host.contains('%') {
        return Err(AddrError::BadZone);
    }
    let ip = std::net::Ipv4Addr::from_str(host).map_err(|_| AddrError::NotAnIp)?;
    finish(IpAddr::V4(ip), port, None)
}

fn parse_v6_zoned(text: &str) -> Result<(Ipv6Addr, Option<Box<str>>), AddrError> {
    let (host, zone) = match text.split_once('%') {
        Some((h, z)) => {
            let ok = !z.is_empty()
                && z.len() <= MAX_ZONE_LEN
                && z.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !ok {
                return Err(AddrError::BadZone);
            }
            (h, Some(Box::from(z)))
        }
        None => (text, None),
    };
    let ip = Ipv6Addr::from_str(host).map_err(|_| AddrError::NotAnIp)?;
    Ok((ip, zone))
}

fn finish(ip: IpAddr, port: Option<u16>, zone: Option<Box<str>>) -> Result<Addr, AddrError> {
    // `::ffff:10.0.0.9%eth0` is 10.0.0.9 for every judgement: a zone must not
    // keep a mapped address out of the IPv4 ranges written for it. IPv4 has
    // no zones, so the zone goes with the IPv6 form (and the address shows
    // as `10.0.0.9`, which reads back as the same Addr).
    let ip = unmap(ip);
    let zone = if ip.is_ipv4() { None } else { zone };
    if ip.is_unspecified() {
        return Err(AddrError::Unspecified);
    }
    Ok(Addr { ip, port, zone })
}

/// Ports are 1-65535 in decimal digits; no sign, no spaces, at most 5 digits.
pub(crate) fn parse_port(text: &str) -> Result<u16, AddrError> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AddrError::BadPort);
    }
    match text.parse::<u32>() {
        Ok(p @ 1..=65535) => Ok(p as u16),
        _ => Err(AddrError::BadPort),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ok(s: &str) -> Addr {
        Addr::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn ipv4_forms() {
        assert_eq!(ok("1.2.3.4").ip, IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4)));
        assert_eq!(ok("1.2.3.4").port, None);
        assert_eq!(ok("1.2.3.4:80").port, Some(80));
        assert_eq!(ok(" 1.2.3.4\t").ip.to_string(), "1.2.3.4");
        assert_eq!(ok("2.2.2.2:3384").port, Some(3384));
    }

    #[test]
    fn ipv6_forms() {
        let a = ok("[2001:db8::1]:443");
        assert_eq!(a.ip, "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(a.port, Some(443));
        assert_eq!(ok("2001:db8::1").port, None);
        assert_eq!(ok("[2001:db8::1]").port, None);
        assert_eq!(ok("[2001:db8::1]:443").to_string(), "[2001:db8::1]:443");
    }

    #[test]
    fn mapped_is_unmapped() {
        let a = ok("[::ffff:188.0.2.128]:48483");
        assert_eq!(a.ip, IpAddr::V4(Ipv4Addr::new(188, 0, 2, 128)));
        assert_eq!(a.port, Some(48483));
        assert_eq!(ok("::ffff:1.2.3.4").ip.to_string(), "1.2.3.4");
        let sa: SocketAddr = "[::ffff:10.0.0.1]:99".parse().unwrap();
        assert_eq!(Addr::from_socket(sa).ip.to_string(), "10.0.0.1");
    }

    #[test]
    fn zones_are_kept() {
        let a = ok("fe80::1%eth0");
        assert_eq!(a.zone.as_deref(), Some("eth0"));
        let b = ok("[fe80::abcd%eth0]:8080");
        assert_eq!(b.zone.as_deref(), Some("eth0"));
        assert_eq!(b.port, Some(8080));
        assert_eq!(b.to_string(), "[fe80::abcd%eth0]:8080");
        assert_eq!(ok("fe80::abcd%eth0").to_string(), "fe80::abcd%eth0");
    }

    #[test]
    fn a_zoned_mapped_address_is_unmapped() {
        for t in [
            "::ffff:10.0.0.9%eth0",
            "[::ffff:10.0.0.9%eth0]:80",
            "::ffff:a00:9%2",
        ] {
            let a = ok(t);
            assert_eq!(a.ip, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)), "{t}");
            assert_eq!(a.zone, None, "{t}");
            assert_eq!(ok(&a.to_string()), a, "{t} shows as it reads back");
        }
        assert_eq!(
            Addr::parse("::ffff:0.0.0.0%eth0"),
            Err(AddrError::Unspecified)
        );
    }

    #[test]
    fn fast_v4_agrees_with_the_general_parser() {
        for t in [
            "1.2.3.4",
            "255.255.255.255",
            "0.0.0.1",
            "10.0.0.1:80",
            "1.2.3.4:65535",
            "1.2.3.4:65536",
            "1.2.3.4:0",
            "1.2.3.4:",
            "01.2.3.4",
            "1.2.3.04",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "0.0.0.0",
            "0.0.0.0:80",
            "1.2.3.4:080",
            "1.2.3.4: 80",
            "1.2.3.4 ",
            " 1.2.3.4",
            "1.2.3.4x",
            "1..2.3",
            "1.2.3.4:123456",
            "1234.1.1.1",
        ] {
            let fast = fast_v4(t.as_bytes());
            let slow = parse(t);
            match fast {
                Some(a) => assert_eq!(Ok(a), slow, "{t}"),
                // Declined: the general parser decides, and it must not
                // accept something the fast path wrongly refused as v4.
                None => assert!(
                    slow.is_err()
                        || !slow.unwrap().ip.is_ipv4()
                        || t.contains(' ')
                        || t.contains(":0"),
                    "{t}"
                ),
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn rev_v4_reads_what_fast_v4_reads(pre in "[0-9.:, x]{0,6}", t in "[0-9.:]{0,24}") {
            let sep = |b: u8| matches!(b, b',' | b' ' | b'\t');
            let v = format!("{pre}{t}");
            let b = v.as_bytes();
            if let Some((start, ip, port)) = rev_v4(b, b.len(), sep) {
                // The token it found is a whole token ...
                proptest::prop_assert!(start == 0 || sep(b[start - 1]));
                proptest::prop_assert!(!b[start..].iter().any(|&c| sep(c)));
                // ... and reads the same as the forward parser reads it.
                proptest::prop_assert_eq!(fast_v4_parts(&b[start..]), Some((ip, port)));
            }
        }

        #[test]
        fn fast_v4_is_exactly_the_general_parser_on_v4(t in "[0-9.:]{0,24}") {
            let slow = parse(&t);
            match fast_v4(t.as_bytes()) {
                Some(a) => proptest::prop_assert_eq!(Ok(a), slow),
                None => proptest::prop_assert!(slow.is_err() || slow.unwrap().ip.is_ipv6()),
            }
        }
    }

    #[test]
    fn errors_are_typed() {
        assert_eq!(
            Addr::parse("[fe80::abcd%eth0]:xyz"),
            Err(AddrError::BadPort)
        );
        assert_eq!(Addr::parse(""), Err(AddrError::Empty));
        assert_eq!(Addr::parse("0.0.0.0"), Err(AddrError::Unspecified));
        assert_eq!(Addr::parse("::"), Err(AddrError::Unspecified));
        assert_eq!(Addr::parse("[::]:80"), Err(AddrError::Unspecified));
        assert_eq!(Addr::parse("1.2.3.4:0"), Err(AddrError::BadPort));
        assert_eq!(Addr::parse("1.2.3.4:65536"), Err(AddrError::BadPort));
        assert_eq!(Addr::parse("1.2.3.4:+80"), Err(AddrError::BadPort));
        assert_eq!(Addr::parse("1.2.3.4:"), Err(AddrError::BadPort));
        assert_eq!(Addr::parse("1.2.3"), Err(AddrError::NotAnIp));
        assert_eq!(Addr::parse("01.2.3.4"), Err(AddrError::NotAnIp));
        assert_eq!(Addr::parse("unknown"), Err(AddrError::NotAnIp));
        assert_eq!(Addr::parse("1.2.3.4%eth0"), Err(AddrError::BadZone));
        assert_eq!(Addr::parse("fe80::1%"), Err(AddrError::BadZone));
        assert_eq!(Addr::parse("fe80::1%e th0"), Err(AddrError::BadZone));
        assert_eq!(Addr::parse("[::1"), Err(AddrError::BadBrackets));
        assert_eq!(Addr::parse("[::1]80"), Err(AddrError::BadBrackets));
        assert_eq!(Addr::parse(&"1".repeat(200)), Err(AddrError::TooLong));
        assert_eq!(Addr::parse_bytes(b"1.2.3.\xff"), Err(AddrError::NotUtf8));
    }
}
