//! An event in words. Pure: only the strategy, the trust set and the hop
//! decide, so the same walk always reads the same way.

use crate::addr::Addr;
use crate::strategy::Strategy;
use crate::trust::{not_public, TrustSet};

use super::event::Event;
use super::report::{HopAddr, Reason, Verdict};

/// Turn a walk's event into words. Pure: only the strategy, the trust set
/// and the hop decide.
pub(super) fn verdict(
    strategy: &Strategy,
    trusted: &TrustSet,
    addr: &HopAddr,
    ev: Event,
    is_peer: bool,
) -> Verdict {
    let a = match addr {
        HopAddr::Addr(a) => Some(a),
        _ => None,
    };
    let private_rule = matches!(
        strategy,
        Strategy::RightmostNonPrivate(_) | Strategy::LeftmostNonPrivate(_)
    );
    let untrusted = || -> Reason {
        match a {
            Some(_) if private_rule => "public: in no special-purpose block".into(),
            Some(_) if trusted.is_empty() => "no trusted ranges configured".into(),
            Some(_) => trusted.not_in_label().clone().into(),
            None => "not an address".into(),
        }
    };
    match ev {
        Event::Trusted if private_rule => Verdict::Trusted(not_public_reason(a)),
        Event::Trusted => Verdict::Trusted(match a.and_then(|a| trusted.matching_label(a.ip)) {
            Some(label) => label.clone().into(),
            None => "trusted".into(),
        }),
        Event::TrustedByCount if is_peer => {
            Verdict::Trusted("the nearest proxy (trusted by count)".into())
        }
        Event::TrustedByCount => Verdict::Trusted(match strategy {
            Strategy::RightmostTrustedCount { count, .. } => {
                format!("appended by one of the {count} trusted proxies (by count)").into()
            }
            _ => "trusted by count".into(),
        }),
        Event::Untrusted => Verdict::Untrusted(untrusted()),
        Event::Unusable => Verdict::Unusable(match addr {
            HopAddr::Invalid { error, .. } => format!("not an address: {error}").into(),
            HopAddr::Unknown => "for=unknown: the proxy did not know the client".into(),
            HopAddr::Obfuscated(_) => "obfuscated identifier, no address".into(),
            HopAddr::Missing => "element without for=".into(),
            HopAddr::Addr(_) => "unspecified (0.0.0.0 or ::): never a client or a proxy".into(),
        }),
        Event::SkippedPrivate => Verdict::Skipped(not_public_reason(a)),
        Event::NotBelieved => Verdict::Skipped("not believed: the peer is not trusted".into()),
        Event::NoAddress => Verdict::Skipped("carries no address (UNKNOWN/LOCAL)".into()),
        Event::Answer => match strategy {
            Strategy::RemoteAddr => Verdict::Believed("the socket peer, taken as it is".into()),
            Strategy::RightmostTrustedCount { .. } if is_peer => {
                Verdict::Believed("fewer entries than the trusted count".into())
            }
            Strategy::RightmostTrustedCount { .. } => {
                Verdict::Believed("the entry the trusted count points at".into())
            }
            Strategy::SingleHeader(_) => {
                Verdict::Believed("the header's one value, from a trusted peer".into())
            }
            Strategy::ProxyProtocol | Strategy::Toa | Strategy::ClientField if is_peer => {
                Verdict::Believed("the claim carries no address, so the peer stands".into())
            }
            Strategy::ProxyProtocol | Strategy::Toa | Strategy::ClientField => {
                Verdict::Believed("claimed by a trusted peer".into())
            }
            _ => Verdict::Untrusted(untrusted()),
        },
    }
}

/// The special-purpose block that makes a hop not public, for the
/// `*-non-private` strategies' verdicts.
fn not_public_reason(a: Option<&Addr>) -> Reason {
    a.and_then(|a| not_public(a.ip))
        .unwrap_or("not public")
        .into()
}
