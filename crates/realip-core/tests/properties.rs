//! Property tests: round trips for the codecs, no panics on any input, and
//! the fast and explained resolution paths agreeing on every request.
// A test crate: its items are shared between its modules, not an API.
#![allow(missing_docs)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use realip_core::field::{self, FieldFormat};
use realip_core::headers;
use realip_core::toa::{self, ToaKind};
use realip_core::{Addr, Cidr, Request, Resolver, Source, Strategy as Chain, TrustSet};

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
        // Bias towards the ranges the trust sets below contain.
        (any::<u8>(), any::<u8>()).prop_map(|(a, b)| IpAddr::V4(Ipv4Addr::new(10, 0, a, b))),
        (any::<u8>(), any::<u8>()).prop_map(|(a, b)| IpAddr::V4(Ipv4Addr::new(192, 168, a, b))),
    ]
}

fn arb_token() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (arb_ip(), proptest::option::of(1u16..)).prop_map(|(ip, port)| match (ip, port) {
            (IpAddr::V6(v6), Some(p)) => format!("[{v6}]:{p}"),
            (ip, Some(p)) => format!("{ip}:{p}"),
            (ip, None) => ip.to_string(),
        }),
        1 => "[a-z_:%\\[\\]0-9.\"]{0,12}",
        1 => Just("unknown".to_string()),
        1 => Just("_hidden".to_string()),
    ]
}

fn arb_list() -> impl Strategy<Value = Vec<String>> {
    // One to three header instances, each a list of tokens with odd separators.
    proptest::collection::vec(
        proptest::collection::vec(
            (
                arb_token(),
                prop_oneof![Just(", "), Just(","), Just(" "), Just(" ,, ")],
            ),
            0..6,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(t, sep)| format!("{t}{sep}"))
                .collect::<String>()
        }),
        0..3,
    )
}

fn arb_forwarded() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(
        proptest::collection::vec(
            (arb_token(), any::<bool>(), any::<bool>()).prop_map(|(t, quote, extra)| {
                let v = if quote { format!("\"{t}\"") } else { t };
                if extra {
                    format!("for={v};proto=https")
                } else {
                    format!("for={v}")
                }
            }),
            0..5,
        )
        .prop_map(|v| v.join(", ")),
        0..3,
    )
}

const STRATEGIES: &[&str] = &[
    "remote-addr",
    "rightmost-trusted-range",
    "rightmost-trusted-count:1",
    "rightmost-trusted-count:3",
    "rightmost-non-private",
    "leftmost-non-private",
    "single-header:X-Forwarded-For",
    "proxy-protocol,toa,client-field,remote-addr",
];

fn check(
    resolver: &Resolver,
    peer: SocketAddr,
    headers: &[(String, String)],
) -> Result<(), TestCaseError> {
    let req = Request::new(peer, headers);
    let fast = resolver.resolve(&req);
    let full = resolver.explain(&req);
    prop_assert_eq!(&fast, &full.client);
    let step = full.decisive().expect("a step ran");
    let last = step.hops.last().expect("the peer is always a hop");
    prop_assert_eq!(&last.source, &Source::Peer);
    if let Some(c) = &fast {
        let i = step.answer.expect("an answer names its hop");
        let hop = &step.hops[i];
        prop_assert_eq!(&hop.source, &c.source);
        if let realip_core::HopAddr::Addr(a) = &hop.addr {
            prop_assert_eq!(a.ip, c.ip);
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn fast_and_explained_agree(
        lists in arb_list(),
        peer_ip in arb_ip(),
        port in 1u16..,
        s in 0..STRATEGIES.len(),
    ) {
        let trusted = TrustSet::parse(["10.0.0.0/8", "192.168.0.0/16"]).unwrap();
        let resolver = Resolver::new(trusted.clone(), Chain::parse_chain(STRATEGIES[s]).unwrap());
        let headers: Vec<(String, String)> = lists.into_iter().map(|v| ("X-Forwarded-For".to_string(), v)).collect();
        let peer = SocketAddr::new(peer_ip, port);
        check(&resolver, peer, &headers)?;
        // An untrusted peer's headers are never believed by the nginx walk.
        if STRATEGIES[s] == "rightmost-trusted-range" && !trusted.contains(peer_ip) {
            let c = resolver.resolve(&Request::new(peer, &headers)).unwrap();
            prop_assert_eq!(c.source, Source::Peer);
        }
    }

    #[test]
    fn forwarded_fast_and_explained_agree(values in arb_forwarded(), peer_ip in arb_ip()) {
        let resolver = Resolver::new(
            TrustSet::parse(["10.0.0.0/8", "192.168.0.0/16"]).unwrap(),
            vec!["rightmost-trusted-range:Forwarded".parse::<Chain>().unwrap()],
        );
        let headers: Vec<(String, String)> = values.into_iter().map(|v| ("Forwarded".to_string(), v)).collect();
        check(&resolver, SocketAddr::new(peer_ip, 9), &headers)?;
    }

    #[test]
    fn xff_forward_and_reverse_agree(lists in arb_list()) {
        let vals: Vec<&[u8]> = lists.iter().map(|s| s.as_bytes()).collect();
        let mut fwd: Vec<&[u8]> = headers::xff_entries(vals.iter().copied()).collect();
        let rev: Vec<&[u8]> = headers::xff_entries_rev(vals.iter().copied()).collect();
        fwd.reverse();
        prop_assert_eq!(fwd, rev);
    }

    #[test]
    fn addr_display_round_trip(ip in arb_ip(), port in proptest::option::of(1u16..)) {
        prop_assume!(!ip.is_unspecified());
        let a = Addr { ip: realip_core::addr::unmap(ip), port, zone: None };
        prop_assume!(!a.ip.is_unspecified());
        prop_assert_eq!(Addr::parse(&a.to_string()).unwrap(), a);
    }

    #[test]
    fn toa_round_trip(ip in arb_ip(), port in 1u16.., tencent in any::<bool>()) {
        prop_assume!(!ip.is_unspecified());
        let kind = match (ip, tencent) {
            (IpAddr::V4(_), true) => ToaKind::Tencent,
            (IpAddr::V6(_), true) => ToaKind::Alibaba,
            _ => ToaKind::Lvs,
        };
        let sa = SocketAddr::new(ip, port);
        let enc = toa::encode(kind, sa).unwrap();
        let dec = toa::decode(&enc).unwrap();
        prop_assert_eq!((dec.kind, dec.addr), (kind, sa));
        let mut opts = vec![1, 1];
        opts.extend_from_slice(&enc);
        prop_assert_eq!(toa::find_in_options(&opts).unwrap().map(|t| t.addr), Some(sa));
    }

    #[test]
    fn field_round_trip(ip in arb_ip(), rest in proptest::collection::vec(any::<u8>(), 0..8)) {
        prop_assume!(!ip.is_unspecified());
        let ip = realip_core::addr::unmap(ip);
        for fmt in [FieldFormat::V4, FieldFormat::V6] {
            if let Ok(mut enc) = field::encode(fmt, ip) {
                enc.extend_from_slice(&rest);
                let (got, tail) = field::decode(fmt, &enc).unwrap();
                prop_assert_eq!(got, ip);
                prop_assert_eq!(tail, &rest[..]);
            }
        }
    }

    #[test]
    fn no_parser_panics(s in "\\PC{0,80}", bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        let _ = Addr::parse(&s);
        let _ = Addr::parse_bytes(&bytes);
        let _ = Cidr::parse(&s);
        let _ = TrustSet::parse(s.split(','));
        let _ = s.parse::<Chain>();
        let _ = Chain::parse_chain(&s);
        let _ = headers::parse_forwarded(&bytes);
        let _ = headers::parse_forwarded(s.as_bytes());
        let _ = headers::single_ip([bytes.as_slice()].into_iter());
        let _ = toa::decode(&bytes);
        let _ = toa::find_in_options(&bytes);
        let _ = field::decode(FieldFormat::V4, &bytes);
        let _ = field::decode(FieldFormat::V6, &bytes);
    }
}
