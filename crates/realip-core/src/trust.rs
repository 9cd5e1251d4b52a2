//! Who may speak for the client: a set of CIDR ranges.
//!
//! Trust is configuration, never a default guess: an empty set trusts nobody,
//! so every header and PROXY header is ignored until ranges are named.
//! Presets cover the common cases (`loopback`, `private`, `any`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Arc;

use crate::addr::{unmap, Addr};

/// Why a CIDR or preset was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// Neither `IP`, `IP/LEN` nor a preset name.
    #[error("{0:?} is not a CIDR (10.0.0.0/8), an address or a preset (loopback, private, any)")]
    Unrecognised(String),
    /// The prefix length is out of range for the family.
    #[error("{text:?}: prefix length must be at most {max}")]
    PrefixTooLong {
        /// The text as given.
        text: String,
        /// 32 or 128.
        max: u8,
    },
}

/// One range: a network and a prefix length. Host bits are cleared when
/// parsed (nginx warns "low address bits are meaningless" and does the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// A range with host bits cleared; `None` when the prefix is longer than
    /// the family's width.
    pub fn new(ip: IpAddr, prefix: u8) -> Option<Self> {
        let (ip, prefix) = unmap_cidr(ip, prefix);
        match ip {
            IpAddr::V4(v4) if prefix <= 32 => Some(Cidr {
                net: IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask4(prefix))),
                prefix,
            }),
            IpAddr::V6(v6) if prefix <= 128 => Some(Cidr {
                net: IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask6(prefix))),
                prefix,
            }),
            _ => None,
        }
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        self.net
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` falls in this range (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, unmap(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => u32::from(a) & mask4(self.prefix) == u32::from(n),
            (IpAddr::V6(n), IpAddr::V6(a)) => u128::from(a) & mask6(self.prefix) == u128::from(n),
            _ => false,
        }
    }

    /// Parse `10.0.0.0/8`, `2001:db8::/32` or a bare address (a /32 or /128).
    pub fn parse(text: &str) -> Result<Self, TrustError> {
        let text = text.trim();
        let bad = || TrustError::Unrecognised(text.to_string());
        let (ip_text, len_text) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let ip = IpAddr::from_str(ip_text).map_err(|_| bad())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match len_text {
            None => max,
            Some(l) if !l.is_empty() && l.len() <= 3 && l.bytes().all(|b| b.is_ascii_digit()) => {
                let p: u8 = l.parse().map_err(|_| bad())?;
                if p > max {
                    return Err(TrustError::PrefixTooLong {
                        text: text.to_string(),
                        max,
                    });
                }
                p
            }
            Some(_) => return Err(bad()),
        };
        Cidr::new(ip, prefix).ok_or_else(bad)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = TrustError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cidr::parse(s)
    }
}

/// `::ffff:10.0.0.0/104` is `10.0.0.0/8`: keep one form so matching is exact.
fn unmap_cidr(ip: IpAddr, prefix: u8) -> (IpAddr, u8) {
    match ip {
        IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
            Some(v4) => (IpAddr::V4(v4), prefix - 96),
            None => (ip, prefix),
        },
        _ => (ip, prefix),
    }
}

fn mask4(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

fn mask6(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    }
}

/// A named group of ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// 127.0.0.0/8 and ::1/128.
    Loopback,
    /// RFC 1918, 100.64.0.0/10 (carrier-grade NAT, used by many pod
    /// networks), 169.254.0.0/16, fc00::/7 and fe80::/10.
    Private,
    /// Every address: for a backend reachable only through proxies.
    Any,
}

impl Preset {
    /// Every preset with its name, for help texts.
    pub const ALL: [(Preset, &'static str); 3] = [
        (Preset::Loopback, "loopback"),
        (Preset::Private, "private"),
        (Preset::Any, "any"),
    ];

    /// The preset called `name` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(p, _)| *p)
    }

    /// The preset's name.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Loopback => "loopback",
            Preset::Private => "private",
            Preset::Any => "any",
        }
    }

    /// The ranges the preset stands for.
    pub fn cidrs(self) -> &'static [&'static str] {
        match self {
            Preset::Loopback => &["127.0.0.0/8", "::1/128"],
            Preset::Private => &[
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "100.64.0.0/10",
                "169.254.0.0/16",
                "fc00::/7",
                "fe80::/10",
            ],
            Preset::Any => &["0.0.0.0/0", "::/0"],
        }
    }
}

/// Whether an address is private in the sense of the `private` preset or
/// loopback. (The `*-non-private` strategies use the wider
/// [`not_public`].)
pub fn is_private_or_loopback(ip: IpAddr) -> bool {
    match unmap(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments()[0];
            v6.is_loopback() || (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    }
}

// What "not public" means for the `*-non-private` strategies.
//
// The rule, in one sentence: an address is not public when the most
// specific block of the IANA special-purpose address registries (RFC 6890,
// as kept current at iana.org/assignments/iana-ipv4-special-registry and
// iana-ipv6-special-registry) that holds it says "Globally Reachable:
// False", or when it can never be a packet's source at all (multicast,
// class E, limited broadcast: RFC 1122 section 3.2.1.3, RFC 4291 section
// 2.7). Such an address cannot be the internet client, so a walk looking
// for the client passes over it like a private proxy.
//
// Two rows say "N/A" rather than True or False because they embed another
// address: Teredo (2001::/32) and 6to4 (2002::/16). Both are the real
// addresses of real tunnelled clients, so they count as public here.
// 192.88.99.0/24 (6to4 relay anycast, deprecated by RFC 7526) is also N/A;
// it is nobody's own address, so it counts as not public.
//
// The documentation blocks (192.0.2/24, 198.51.100/24, 203.0.113/24,
// 2001:db8::/32, 3fff::/20) are not public: nothing on the internet may use
// them (RFC 5737, RFC 3849, RFC 9637). Labs that play "the internet" with
// them (ours uses 203.0.113.7) must resolve with a trust set
// (rightmost-trusted-range), not with these strategies.
//
// realclientip-go's list agrees on every IPv4 block except the two
// globally reachable anycast exceptions inside 192.0.0.0/24; for IPv6 it
// also counts Teredo, 6to4 and all of 2001::/23 as not public and does not
// know 64:ff9b:1::/48, 3fff::/20 or 5f00::/16.
//
// Order matters: the first row that holds the address decides, so each
// globally reachable exception sits before the block it is carved from.

/// One row of the table: network, prefix, and `None` when the block is
/// globally reachable (an exception to a wider block) or the label an
/// explanation shows when it is not.
type Row4 = (u32, u8, Option<&'static str>);
type Row6 = (u128, u8, Option<&'static str>);

const fn v4(a: u8, b: u8, c: u8, d: u8) -> u32 {
    u32::from_be_bytes([a, b, c, d])
}

const NOT_PUBLIC_V4: &[Row4] = &[
    (
        v4(0, 0, 0, 0),
        8,
        Some("0.0.0.0/8 (\"this network\", RFC 791)"),
    ),
    (v4(10, 0, 0, 0), 8, Some("10.0.0.0/8 (private, RFC 1918)")),
    (
        v4(100, 64, 0, 0),
        10,
        Some("100.64.0.0/10 (shared CGNAT space, RFC 6598)"),
    ),
    (
        v4(127, 0, 0, 0),
        8,
        Some("127.0.0.0/8 (loopback, RFC 1122)"),
    ),
    (
        v4(169, 254, 0, 0),
        16,
        Some("169.254.0.0/16 (link-local, RFC 3927)"),
    ),
    (
        v4(172, 16, 0, 0),
        12,
        Some("172.16.0.0/12 (private, RFC 1918)"),
    ),
    (v4(192, 0, 0, 9), 32, None), // PCP anycast, RFC 7723: globally reachable
    (v4(192, 0, 0, 10), 32, None), // TURN anycast, RFC 8155: globally reachable
    (
        v4(192, 0, 0, 0),
        24,
        Some("192.0.0.0/24 (IETF protocol assignments, RFC 6890)"),
    ),
    (
        v4(192, 0, 2, 0),
        24,
        Some("192.0.2.0/24 (documentation TEST-NET-1, RFC 5737)"),
    ),
    (
        v4(192, 88, 99, 0),
        24,
        Some("192.88.99.0/24 (deprecated 6to4 relay anycast, RFC 7526)"),
    ),
    (
        v4(192, 168, 0, 0),
        16,
        Some("192.168.0.0/16 (private, RFC 1918)"),
    ),
    (
        v4(198, 18, 0, 0),
        15,
        Some("198.18.0.0/15 (benchmarking, RFC 2544)"),
    ),
    (
        v4(198, 51, 100, 0),
        24,
        Some("198.51.100.0/24 (documentation TEST-NET-2, RFC 5737)"),
    ),
    (
        v4(203, 0, 113, 0),
        24,
        Some("203.0.113.0/24 (documentation TEST-NET-3, RFC 5737)"),
    ),
    (
        v4(224, 0, 0, 0),
        4,
        Some("224.0.0.0/4 (multicast, never a source, RFC 1122)"),
    ),
    (
        v4(255, 255, 255, 255),
        32,
        Some("255.255.255.255/32 (limited broadcast, RFC 919)"),
    ),
    (
        v4(240, 0, 0, 0),
        4,
        Some("240.0.0.0/4 (reserved, RFC 1112)"),
    ),
];

const fn v6(s: [u16; 8]) -> u128 {
    let mut v = 0u128;
    let mut i = 0;
    while i < 8 {
        v = (v << 16) | s[i] as u128;
        i += 1;
    }
    v
}

const NOT_PUBLIC_V6: &[Row6] = &[
    (
        v6([0, 0, 0, 0, 0, 0, 0, 1]),
        128,
        Some("::1/128 (loopback, RFC 4291)"),
    ),
    (v6([0; 8]), 128, Some("::/128 (unspecified, RFC 4291)")),
    (
        v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0]),
        48,
        Some("64:ff9b:1::/48 (local-use IPv4/IPv6 translation, RFC 8215)"),
    ),
    (
        v6([0x100, 0, 0, 0, 0, 0, 0, 0]),
        64,
        Some("100::/64 (discard-only, RFC 6666)"),
    ),
    // Carved out of 2001::/23 and globally reachable (the registry's
    // "unless allowed by a more specific allocation").
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0]), 32, None), // Teredo, RFC 4380 (N/A: see above)
    (v6([0x2001, 1, 0, 0, 0, 0, 0, 1]), 128, None), // PCP anycast, RFC 7723
    (v6([0x2001, 1, 0, 0, 0, 0, 0, 2]), 128, None), // TURN anycast, RFC 8155
    (v6([0x2001, 1, 0, 0, 0, 0, 0, 3]), 128, None), // DNS-SD SRP anycast, RFC 9665
    (v6([0x2001, 3, 0, 0, 0, 0, 0, 0]), 32, None), // AMT, RFC 7450
    (v6([0x2001, 4, 0x112, 0, 0, 0, 0, 0]), 48, None), // AS112-v6, RFC 7535
    (v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0]), 28, None), // ORCHIDv2, RFC 7343
    (v6([0x2001, 0x30, 0, 0, 0, 0, 0, 0]), 28, None), // DRIP DETs, RFC 9374
    (
        v6([0x2001, 2, 0, 0, 0, 0, 0, 0]),
        48,
        Some("2001:2::/48 (benchmarking, RFC 5180)"),
    ),
    (
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0]),
        23,
        Some("2001::/23 (IETF protocol assignments, RFC 2928)"),
    ),
    (
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]),
        32,
        Some("2001:db8::/32 (documentation, RFC 3849)"),
    ),
    (
        v6([0x3fff, 0, 0, 0, 0, 0, 0, 0]),
        20,
        Some("3fff::/20 (documentation, RFC 9637)"),
    ),
    (
        v6([0x5f00, 0, 0, 0, 0, 0, 0, 0]),
        16,
        Some("5f00::/16 (SRv6 SIDs, RFC 9602)"),
    ),
    (
        v6([0xfc00, 0, 0, 0, 0, 0, 0, 0]),
        7,
        Some("fc00::/7 (unique local, RFC 4193)"),
    ),
    (
        v6([0xfe80, 0, 0, 0, 0, 0, 0, 0]),
        10,
        Some("fe80::/10 (link-local, RFC 4291)"),
    ),
    (
        v6([0xff00, 0, 0, 0, 0, 0, 0, 0]),
        8,
        Some("ff00::/8 (multicast, never a source, RFC 4291)"),
    ),
];

/// Why `ip` is not public: the special-purpose block that holds it (see
/// the table above for the rule and its sources), as an explanation shows
/// it, e.g. `"203.0.113.0/24 (documentation TEST-NET-3, RFC 5737)"`.
/// `None` for a public address. IPv4-mapped IPv6 is judged as IPv4.
pub fn not_public(ip: IpAddr) -> Option<&'static str> {
    match unmap(ip) {
        IpAddr::V4(a) => {
            let a = u32::from(a);
            NOT_PUBLIC_V4
                .iter()
                .find(|&&(n, p, _)| a & mask4(p) == n)
                .and_then(|r| r.2)
        }
        IpAddr::V6(a) => {
            let a = u128::from(a);
            NOT_PUBLIC_V6
                .iter()
                .find(|&&(n, p, _)| a & mask6(p) == n)
                .and_then(|r| r.2)
        }
    }
}

/// Every block [`not_public`] counts, in table order (for help texts and
/// tests).
pub fn not_public_blocks() -> impl Iterator<Item = &'static str> {
    NOT_PUBLIC_V4
        .iter()
        .filter_map(|r| r.2)
        .chain(NOT_PUBLIC_V6.iter().filter_map(|r| r.2))
}

/// One entry of a trust set, kept with how it was written, so that an
/// explanation can say "trusted: in 10.0.0.0/8 (private)".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustEntry {
    /// The range.
    pub cidr: Cidr,
    /// The preset it came from, if any.
    pub preset: Option<Preset>,
}

impl fmt::Display for TrustEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.preset {
            Some(p) => write!(f, "{} ({})", self.cidr, p.name()),
            None => write!(f, "{}", self.cidr),
        }
    }
}

/// The set of ranges whose members may speak for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustSet {
    // Kept apart by family so a lookup scans only ranges that can match.
    v4: Vec<(u32, u32, usize)>,
    v6: Vec<(u128, u128, usize)>,
    entries: Vec<TrustEntry>,
    // Explanation texts made once ("in 10.0.0.0/8 (private)", "not in
    // ..."), so explaining a request formats no addresses.
    labels: Vec<Arc<str>>,
    not_in: Arc<str>,
}

impl Default for TrustSet {
    fn default() -> Self {
        TrustSet {
            v4: Vec::new(),
            v6: Vec::new(),
            entries: Vec::new(),
            labels: Vec::new(),
            not_in: Arc::from("not in any trusted range"),
        }
    }
}

impl TrustSet {
    /// An empty set: trusts nobody.
    pub fn new() -> Self {
        Self::default()
    }

    /// "in 10.0.0.0/8 (private)" for the entry containing `ip`.
    pub fn matching_label(&self, ip: IpAddr) -> Option<&Arc<str>> {
        self.index_of(ip).and_then(|i| self.labels.get(i))
    }

    /// "not in 10.0.0.0/8, ..." for addresses outside the set.
    pub fn not_in_label(&self) -> &Arc<str> {
        &self.not_in
    }

    /// Add one range.
    pub fn add(&mut self, cidr: Cidr) {
        self.push(TrustEntry { cidr, preset: None });
    }

    /// Add every range of a preset.
    pub fn add_preset(&mut self, preset: Preset) {
        for text in preset.cidrs() {
            if let Ok(cidr) = Cidr::parse(text) {
                self.push(TrustEntry {
                    cidr,
                    preset: Some(preset),
                });
            }
        }
    }

    /// Add `text`: a preset name, a CIDR, or an address.
    pub fn add_str(&mut self, text: &str) -> Result<(), TrustError> {
        match Preset::from_name(text.trim()) {
            Some(p) => self.add_preset(p),
            None => self.add(Cidr::parse(text)?),
        }
        Ok(())
    }

    /// A set from a list of presets, CIDRs and addresses.
    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, TrustError> {
        let mut set = TrustSet::new();
        for item in items {
            set.add_str(item)?;
        }
        Ok(set)
    }

    /// A set holding one preset.
    pub fn preset(preset: Preset) -> Self {
        let mut set = TrustSet::new();
        set.add_preset(preset);
        set
    }

    fn push(&mut self, entry: TrustEntry) {
        if self.entries.contains(&entry) {
            return;
        }
        let idx = self.entries.len();
        match entry.cidr.net {
            IpAddr::V4(n) => self.v4.push((u32::from(n), mask4(entry.cidr.prefix), idx)),
            IpAddr::V6(n) => self.v6.push((u128::from(n), mask6(entry.cidr.prefix), idx)),
        }
        self.labels.push(Arc::from(format!("in {entry}")));
        self.entries.push(entry);
        self.not_in = Arc::from(format!("not in {self}"));
    }

    /// Whether the set is empty (trusts nobody).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, in the order they were added.
    pub fn entries(&self) -> &[TrustEntry] {
        &self.entries
    }

    /// The first entry containing `ip`, if any.
    pub fn matching(&self, ip: IpAddr) -> Option<&TrustEntry> {
        self.index_of(ip).and_then(|i| self.entries.get(i))
    }

    #[inline]
    fn index_of(&self, ip: IpAddr) -> Option<usize> {
        match unmap(ip) {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.iter().find(|(n, m, _)| a & m == *n).map(|e| e.2)
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.iter().find(|(n, m, _)| a & m == *n).map(|e| e.2)
            }
        }
    }

    /// Whether `ip` is trusted.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.index_of(ip).is_some()
    }

    /// Whether a parsed address is trusted. Judged on the address alone: a
    /// zone names an interface on the machine that wrote it and says nothing
    /// about where the address lives, so `fe80::1%eth0` is trusted exactly
    /// when `fe80::1` is.
    #[inline]
    pub fn trusts(&self, addr: &Addr) -> bool {
        self.contains(addr.ip)
    }
}

impl fmt::Display for TrustSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.entries.is_empty() {
            return f.write_str("(nobody)");
        }
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", e.cidr)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
