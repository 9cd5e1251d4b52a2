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
/// loopback: the `*-non-private` strategies skip these.
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

    /// Whether a parsed address is trusted. A zoned address never is: a zone
    /// names an interface on another machine, so the range cannot vouch for it.
    #[inline]
    pub fn trusts(&self, addr: &Addr) -> bool {
        addr.zone.is_none() && self.contains(addr.ip)
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
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_matching() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.255.0.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.1.2.3")));
        let c6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c6.contains(ip("2001:db8:1::5")));
        assert!(!c6.contains(ip("2001:db9::5")));
        assert!(!c6.contains(ip("10.0.0.1")));
        assert_eq!(Cidr::parse("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(Cidr::parse("1.2.3.4").unwrap().prefix(), 32);
        assert_eq!(
            Cidr::parse("::ffff:10.0.0.0/104").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
    }

    #[test]
    fn cidr_errors() {
        assert!(matches!(
            Cidr::parse("10.0.0.0/33"),
            Err(TrustError::PrefixTooLong { max: 32, .. })
        ));
        assert!(Cidr::parse("::/129").is_err());
        assert!(Cidr::parse("10.0.0.0/").is_err());
        assert!(Cidr::parse("10.0.0.0/-1").is_err());
        assert!(Cidr::parse("nonsense").is_err());
        assert!(Cidr::parse("10.0.0.0/8/8").is_err());
    }

    #[test]
    fn presets() {
        let set = TrustSet::parse(["private"]).unwrap();
        for a in [
            "10.1.1.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.1.1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(set.contains(ip(a)), "{a} should be private");
        }
        for a in [
            "172.32.0.1",
            "8.8.8.8",
            "100.128.0.1",
            "2001:db8::1",
            "127.0.0.1",
        ] {
            assert!(!set.contains(ip(a)), "{a} should not be private");
        }
        let lo = TrustSet::parse(["loopback"]).unwrap();
        assert!(lo.contains(ip("127.0.0.2")) && lo.contains(ip("::1")));
        assert!(!lo.contains(ip("::2")));
        let any = TrustSet::parse(["ANY"]).unwrap();
        assert!(any.contains(ip("8.8.8.8")) && any.contains(ip("2001:db8::1")));
        assert!(TrustSet::new().is_empty() && !TrustSet::new().contains(ip("127.0.0.1")));
    }

    #[test]
    fn matching_says_which_entry() {
        let set = TrustSet::parse(["4.4.4.0/24", "private"]).unwrap();
        assert_eq!(
            set.matching(ip("10.0.0.1")).unwrap().to_string(),
            "10.0.0.0/8 (private)"
        );
        assert_eq!(
            set.matching(ip("4.4.4.4")).unwrap().to_string(),
            "4.4.4.0/24"
        );
    }

    #[test]
    fn zoned_never_trusted() {
        let set = TrustSet::parse(["any"]).unwrap();
        assert!(!set.trusts(&Addr::parse("fe80::1%eth0").unwrap()));
        assert!(set.trusts(&Addr::parse("fe80::1").unwrap()));
    }

    #[test]
    fn private_helper_agrees_with_preset() {
        let set = TrustSet::parse(["private", "loopback"]).unwrap();
        for a in [
            "10.0.0.1",
            "100.63.0.1",
            "100.64.0.1",
            "127.0.0.1",
            "::1",
            "fc00::1",
            "fe80::1",
            "1.1.1.1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
        ] {
            assert_eq!(set.contains(ip(a)), is_private_or_loopback(ip(a)), "{a}");
        }
    }
}
