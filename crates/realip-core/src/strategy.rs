//! The resolution strategies, by name.
//!
//! A strategy says where to look for the client and how far to believe what
//! it finds. Several can be chained: the first that yields an answer wins, a
//! strategy without one hands on to the next, and a chain that gives out
//! has no answer (see [`crate::Resolver::resolve`]).

use std::fmt;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::sync::Arc;

/// A header name, shared between the configuration and every answer that
/// came from it (cloning is a reference-count bump, not a copy).
pub type HeaderName = Arc<str>;

/// The header the list strategies read when none is named.
pub const DEFAULT_LIST_HEADER: &str = "X-Forwarded-For";

/// One way of finding the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// The socket peer, nothing else.
    RemoteAddr,
    /// A header holding one address (X-Real-IP), read only from a trusted
    /// peer; absent, repeated or malformed gives no answer.
    SingleHeader(HeaderName),
    /// nginx's realip with `real_ip_recursive on` over a list header
    /// (X-Forwarded-For, or RFC 7239 `Forwarded`).
    RightmostTrustedRange(HeaderName),
    /// Envoy's `xff_num_trusted_hops`: the Nth entry from the right.
    RightmostTrustedCount {
        /// The list header.
        header: HeaderName,
        /// How many proxies in front of us append to it.
        count: NonZeroUsize,
    },
    /// The rightmost public entry, behind a non-public peer ("public" as
    /// [`crate::trust::not_public`] defines it).
    RightmostNonPrivate(HeaderName),
    /// The leftmost public entry, behind a non-public peer. Forgeable: for
    /// logging only.
    LeftmostNonPrivate(HeaderName),
    /// The source address of a PROXY protocol header, from a trusted peer.
    ProxyProtocol,
    /// The address in a TOA TCP option, from a trusted peer.
    Toa,
    /// The client-IP field of a custom protocol, from a trusted peer.
    ClientField,
}

/// Why a strategy name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrategyError {
    /// No strategy by that name.
    #[error("unknown strategy {0:?}; see `realip resolve --help` for the list")]
    Unknown(String),
    /// A strategy that needs an argument got none, or a bad one.
    #[error("strategy {name}: {problem}")]
    BadArgument {
        /// The strategy.
        name: &'static str,
        /// What is wrong with its argument.
        problem: String,
    },
    /// An empty chain.
    #[error("no strategy given")]
    Empty,
}

/// The help text for every strategy, with an example of each. Kept beside
/// the parser so the two cannot drift apart.
pub const STRATEGY_HELP: &str = "\
Strategies (chain several with commas or repeated --strategy): the first that yields an answer wins;
a strategy with no answer hands on to the next. If none answers there is no client (exit 1):
end the chain with remote-addr to fall back to the peer, labelled as such.
Zones (fe80::1%eth0) are shown but never judged: every strategy trusts or skips an address
exactly as it would without its zone, and ::ffff:a.b.c.d%zone is a.b.c.d.

  remote-addr
      The socket peer. Example: peer 9.9.9.9:1234 -> 9.9.9.9.

  rightmost-trusted-range[:HEADER]        (default; HEADER defaults to X-Forwarded-For)
      nginx realip with real_ip_recursive on. If the peer is not trusted it is the client and
      no header is read. Otherwise walk the header from the right (last instance first),
      skipping trusted entries; the first untrusted entry is the client. An entry that does not
      parse stops the walk and the last address walked is the answer (flagged). If every entry
      is trusted, the leftmost is the answer. HEADER may be Forwarded (RFC 7239); there
      `for=unknown` and `for=_hidden` stop the walk, they are never skipped.
      Example: --trusted 10.0.0.0/8, peer 10.0.0.5:555, X-Forwarded-For: 3.3.3.3, 10.0.0.1
      -> 3.3.3.3.

  rightmost-trusted-count:N[:HEADER]
      Envoy xff_num_trusted_hops=N: N proxies append to the header, so the Nth entry from the
      right is the client. Fewer than N entries: the peer is the answer. The peer is not
      checked against --trusted. Example: N=2, X-Forwarded-For: 203.0.113.128, 203.0.113.10,
      203.0.113.1 -> 203.0.113.10.

  rightmost-non-private[:HEADER]
      Headers are read only when the peer is not public (a public peer: no answer, the chain
      goes on); then the rightmost public entry. A broken entry or a chain of only non-public
      entries gives no answer. Needs no --trusted: every non-public address is trusted.
      Not public (IANA special-purpose registries, RFC 6890: the blocks marked not globally
      reachable, plus what can never be a source):
        IPv4  0/8, 10/8, 100.64/10 (CGNAT), 127/8, 169.254/16, 172.16/12, 192.0.0/24 (but
              192.0.0.9 and .10), 192.0.2/24, 198.51.100/24, 203.0.113/24 (documentation),
              192.88.99/24 (old 6to4 relays), 192.168/16, 198.18/15 (benchmarking),
              224/4 (multicast), 240/4, 255.255.255.255
        IPv6  ::1, ::, 64:ff9b:1::/48, 100::/64, 2001::/23 (but Teredo 2001::/32 and the other
              globally reachable blocks in it), 2001:2::/48, 2001:db8::/32 and 3fff::/20
              (documentation), 5f00::/16, fc00::/7, fe80::/10, ff00::/8 (multicast)
      So a lab client in 203.0.113.0/24 is never the answer here; use a trust set.
      Example: peer 10.0.0.5, X-Forwarded-For: 1.1.1.1, 8.8.8.8, 10.0.0.1 -> 8.8.8.8.

  leftmost-non-private[:HEADER]
      The leftmost public entry, skipping broken ones (read only when the peer is not public;
      a public peer: no answer). FORGEABLE: the client writes the left end. For logging only,
      never for access control. Public as for rightmost-non-private.
      Example: peer 10.0.0.5, X-Forwarded-For: 1.1.1.1, 8.8.8.8 -> 1.1.1.1.

  single-header:NAME
      A header that holds exactly one address (X-Real-IP, True-Client-IP, CF-Connecting-IP),
      read only from a trusted peer. Absent, repeated or malformed: no answer.
      Example: --trusted 10.0.0.0/8, peer 10.0.0.5, X-Real-IP: 1.2.3.4 -> 1.2.3.4.

  proxy-protocol
      The source address of the PROXY protocol v1/v2 header, believed only from a trusted
      peer. UNKNOWN / LOCAL headers carry no address: the peer stands.
      Example: --trusted 127.0.0.1, header `PROXY TCP4 192.0.2.1 10.0.0.1 5555 80` -> 192.0.2.1.

  toa
      The address in a TOA TCP option (kinds 254, 200, 253), believed only from a trusted peer.

  client-field
      The client-IP field at the front of a custom TCP/UDP protocol (4-byte big-endian IPv4 or
      16-byte IPv6), believed only from a trusted peer.
";

impl Strategy {
    /// The strategy's name without arguments.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Strategy::RemoteAddr => "remote-addr",
            Strategy::SingleHeader(_) => "single-header",
            Strategy::RightmostTrustedRange(_) => "rightmost-trusted-range",
            Strategy::RightmostTrustedCount { .. } => "rightmost-trusted-count",
            Strategy::RightmostNonPrivate(_) => "rightmost-non-private",
            Strategy::LeftmostNonPrivate(_) => "leftmost-non-private",
            Strategy::ProxyProtocol => "proxy-protocol",
            Strategy::Toa => "toa",
            Strategy::ClientField => "client-field",
        }
    }

    /// The header this strategy reads, if any.
    pub fn header(&self) -> Option<&HeaderName> {
        match self {
            Strategy::SingleHeader(h)
            | Strategy::RightmostTrustedRange(h)
            | Strategy::RightmostNonPrivate(h)
            | Strategy::LeftmostNonPrivate(h)
            | Strategy::RightmostTrustedCount { header: h, .. } => Some(h),
            _ => None,
        }
    }

    /// Parse several chains (one per command-line occurrence) into one,
    /// in order. Empty input gives an empty chain: the caller's default.
    pub fn parse_chains<'a>(
        items: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<Strategy>, StrategyError> {
        let mut chain = Vec::new();
        for item in items {
            chain.extend(Strategy::parse_chain(item)?);
        }
        Ok(chain)
    }

    /// Parse a comma-separated chain such as `proxy-protocol,remote-addr`.
    pub fn parse_chain(text: &str) -> Result<Vec<Strategy>, StrategyError> {
        let chain = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Strategy::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        if chain.is_empty() {
            return Err(StrategyError::Empty);
        }
        Ok(chain)
    }
}

fn header_arg(name: &'static str, arg: Option<&str>) -> Result<HeaderName, StrategyError> {
    let h = arg.unwrap_or(DEFAULT_LIST_HEADER);
    check_header_name(name, h)
}

fn check_header_name(name: &'static str, h: &str) -> Result<HeaderName, StrategyError> {
    let ok = !h.is_empty()
        && h.len() <= 128
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !ok {
        return Err(StrategyError::BadArgument {
            name,
            problem: format!("{h:?} is not a header name"),
        });
    }
    Ok(Arc::from(h))
}

impl FromStr for Strategy {
    type Err = StrategyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (kind, arg) = match text.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (text, None),
        };
        let no_arg = |s: Strategy| match arg {
            None => Ok(s),
            Some(_) => Err(StrategyError::BadArgument {
                name: s.kind_name(),
                problem: "takes no argument".into(),
            }),
        };
        match kind.to_ascii_lowercase().as_str() {
            "remote-addr" => no_arg(Strategy::RemoteAddr),
            "proxy-protocol" => no_arg(Strategy::ProxyProtocol),
            "toa" => no_arg(Strategy::Toa),
            "client-field" => no_arg(Strategy::ClientField),
            "single-header" => {
                let name = "single-header";
                let h = arg.ok_or(StrategyError::BadArgument {
                    name,
                    problem: "needs a header name, e.g. single-header:X-Real-IP".into(),
                })?;
                Ok(Strategy::SingleHeader(check_header_name(name, h)?))
            }
            "rightmost-trusted-range" => Ok(Strategy::RightmostTrustedRange(header_arg(
                "rightmost-trusted-range",
                arg,
            )?)),
            "rightmost-non-private" => Ok(Strategy::RightmostNonPrivate(header_arg(
                "rightmost-non-private",
                arg,
            )?)),
            "leftmost-non-private" => Ok(Strategy::LeftmostNonPrivate(header_arg(
                "leftmost-non-private",
                arg,
            )?)),
            "rightmost-trusted-count" => {
                let name = "rightmost-trusted-count";
                let arg = arg.ok_or(StrategyError::BadArgument {
                    name,
                    problem: "needs a count, e.g. rightmost-trusted-count:2".into(),
                })?;
                let (n, header) = match arg.split_once(':') {
                    Some((n, h)) => (n, Some(h)),
                    None => (arg, None),
                };
                let count = n
                    .parse::<NonZeroUsize>()
                    .ok()
                    .filter(|c| c.get() <= 64)
                    .ok_or_else(|| StrategyError::BadArgument {
                        name,
                        problem: format!(
                            "{n:?} is not a count from 1 to 64 (for 0 use remote-addr)"
                        ),
                    })?;
                Ok(Strategy::RightmostTrustedCount {
                    header: header_arg(name, header)?,
                    count,
                })
            }
            _ => Err(StrategyError::Unknown(text.to_string())),
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::RightmostTrustedCount { header, count } => {
                write!(f, "{}:{}:{}", self.kind_name(), count, header)
            }
            s => match s.header() {
                Some(h) => write!(f, "{}:{}", s.kind_name(), h),
                None => f.write_str(s.kind_name()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in [
            "remote-addr",
            "single-header:X-Real-IP",
            "rightmost-trusted-range:X-Forwarded-For",
            "rightmost-trusted-range:Forwarded",
            "rightmost-trusted-count:2:X-Forwarded-For",
            "rightmost-non-private:X-Forwarded-For",
            "leftmost-non-private:X-Forwarded-For",
            "proxy-protocol",
            "toa",
            "client-field",
        ] {
            assert_eq!(Strategy::from_str(s).unwrap().to_string(), s);
        }
        assert_eq!(
            Strategy::from_str("rightmost-trusted-range").unwrap(),
            Strategy::RightmostTrustedRange(Arc::from("X-Forwarded-For"))
        );
    }

    #[test]
    fn every_strategy_has_help() {
        for s in [
            "remote-addr",
            "single-header",
            "rightmost-trusted-range",
            "rightmost-trusted-count",
            "rightmost-non-private",
            "leftmost-non-private",
            "proxy-protocol",
            "toa",
            "client-field",
        ] {
            assert!(
                STRATEGY_HELP.contains(&format!("\n  {s}")),
                "{s} missing from help"
            );
        }
    }

    #[test]
    fn help_lists_every_not_public_block() {
        // The help abbreviates (10/8); each block's network must appear in
        // some form, so the list cannot drift from the table.
        for label in crate::trust::not_public_blocks() {
            let cidr = label.split(' ').next().unwrap();
            let (net, len) = cidr.split_once('/').unwrap();
            let mut forms = vec![cidr.to_string()];
            let mut short = net;
            while let Some(t) = short.strip_suffix(".0") {
                short = t;
                forms.push(format!("{short}/{len}"));
            }
            let found = forms.iter().any(|f| STRATEGY_HELP.contains(f.as_str()))
                || (len == "32" || len == "128") && STRATEGY_HELP.contains(net);
            assert!(found, "{label} missing from the help");
        }
    }

    #[test]
    fn errors() {
        assert!(matches!(
            Strategy::from_str("nope"),
            Err(StrategyError::Unknown(_))
        ));
        assert!(Strategy::from_str("single-header").is_err());
        assert!(Strategy::from_str("single-header:Bad Name").is_err());
        assert!(Strategy::from_str("rightmost-trusted-count:0").is_err());
        assert!(Strategy::from_str("rightmost-trusted-count:x").is_err());
        assert!(Strategy::from_str("remote-addr:x").is_err());
        assert_eq!(Strategy::parse_chain(" , "), Err(StrategyError::Empty));
        assert_eq!(
            Strategy::parse_chain("proxy-protocol, remote-addr")
                .unwrap()
                .len(),
            2
        );
    }
}
