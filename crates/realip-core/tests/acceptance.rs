//! The resolution cases the foundation issue names, plus the edges around
//! them. Trusted = 10.0.0.0/8 unless a test says otherwise.
// A test crate: its items are shared between its modules, not an API.
#![allow(missing_docs)]

use std::net::SocketAddr;

use realip_core::{
    ClientAddr, ProxyClaim, Request, Resolution, Resolver, Source, Stop, Strategy, TrustSet,
    Verdict,
};

fn resolver(trusted: &[&str], strategy: &str) -> Resolver {
    Resolver::new(
        TrustSet::parse(trusted.iter().copied()).unwrap(),
        Strategy::parse_chain(strategy).unwrap(),
    )
}

fn peer(s: &str) -> SocketAddr {
    match s.parse() {
        Ok(sa) => sa,
        Err(_) => SocketAddr::new(s.parse().unwrap(), 40000),
    }
}

/// Resolve on both paths and insist they agree.
fn both(r: &Resolver, p: &str, headers: &[(&str, &str)]) -> (Option<ClientAddr>, Resolution) {
    let h = headers.to_vec();
    let req = Request::new(peer(p), &h);
    let fast = r.resolve(&req);
    let full = r.explain(&req);
    assert_eq!(fast, full.client, "resolve and explain disagree");
    (fast, full)
}

fn ip(c: &Option<ClientAddr>) -> String {
    c.as_ref().map_or("none".into(), |c| c.ip.to_string())
}

const TEN: &[&str] = &["10.0.0.0/8"];

#[test]
fn untrusted_peer_headers_are_ignored() {
    let r = resolver(TEN, "rightmost-trusted-range");
    let (c, full) = both(
        &r,
        "9.9.9.9:1234",
        &[("X-Forwarded-For", "1.2.3.4, 10.0.0.1")],
    );
    assert_eq!(ip(&c), "9.9.9.9");
    let c = c.unwrap();
    assert_eq!((c.port, c.source), (Some(1234), Source::Peer));
    let step = full.decisive().unwrap();
    assert_eq!(step.stop, Stop::PeerUntrusted);
    // Every header entry is listed but none was reached.
    assert_eq!(step.hops.len(), 3);
    assert!(matches!(step.hops[0].verdict, Verdict::NotReached));
    assert!(matches!(step.hops[1].verdict, Verdict::NotReached));
    assert_eq!(step.hops[2].verdict.trusted(), Some(false));
    assert_eq!(step.answer, Some(2));
}

#[test]
fn trusted_peer_first_untrusted_from_right() {
    let r = resolver(TEN, "rightmost-trusted-range");
    let (c, full) = both(
        &r,
        "10.0.0.5:555",
        &[("X-Forwarded-For", "3.3.3.3, 10.0.0.1")],
    );
    assert_eq!(ip(&c), "3.3.3.3");
    let c = c.unwrap();
    assert_eq!(
        c.source,
        Source::Header {
            name: "X-Forwarded-For".into(),
            index: 0
        }
    );
    let hops = full.hops();
    assert_eq!(hops.len(), 3);
    assert_eq!(hops[0].verdict.trusted(), Some(false));
    assert_eq!(hops[1].verdict, Verdict::Trusted("in 10.0.0.0/8".into()));
    assert_eq!(hops[2].verdict.trusted(), Some(true));
    assert_eq!(full.decisive().unwrap().stop, Stop::UntrustedEntry);
}

#[test]
fn multiple_instances_last_read_first() {
    let r = resolver(&["10.0.0.0/8", "4.4.4.0/24"], "rightmost-trusted-range");
    let (c, full) = both(
        &r,
        "10.0.0.5:1",
        &[
            ("X-Forwarded-For", "2.2.2.2:3384, 3.3.3.3"),
            ("X-Forwarded-For", "4.4.4.4"),
        ],
    );
    assert_eq!(ip(&c), "3.3.3.3");
    assert_eq!(
        c.unwrap().source,
        Source::Header {
            name: "X-Forwarded-For".into(),
            index: 1
        }
    );
    assert_eq!(full.hops().len(), 4);
    assert!(matches!(full.hops()[0].verdict, Verdict::NotReached));
}

#[test]
fn all_trusted_gives_leftmost() {
    let r = resolver(TEN, "rightmost-trusted-range");
    let (c, full) = both(
        &r,
        "10.0.0.5:1",
        &[("X-Forwarded-For", "10.0.0.2, 10.0.0.3")],
    );
    assert_eq!(ip(&c), "10.0.0.2");
    let step = full.decisive().unwrap();
    assert_eq!(step.stop, Stop::AllTrusted);
    assert_eq!(step.answer, Some(0));
    assert_eq!(step.hops[0].verdict.trusted(), Some(true));
}

#[test]
fn port_in_entry_is_kept() {
    let r = resolver(TEN, "rightmost-trusted-range");
    let (c, _) = both(
        &r,
        "10.0.0.5:1",
        &[("X-Forwarded-For", "[2001:db8::1]:443, 10.0.0.3")],
    );
    let c = c.unwrap();
    assert_eq!(
        (c.ip.to_string(), c.port),
        ("2001:db8::1".into(), Some(443))
    );
}

#[test]
fn trusted_peer_without_header_is_the_client() {
    let r = resolver(TEN, "rightmost-trusted-range");
    let (c, full) = both(&r, "10.0.0.5:1", &[]);
    assert_eq!(c.unwrap().source, Source::Peer);
    assert_eq!(full.decisive().unwrap().stop, Stop::NoEntries);
}

#[test]
fn unparsable_entry_stops_the_walk_flagged() {
    let r = resolver(TEN, "rightmost-trusted-range");
    // nginx: the garbage stops the walk; the last address walked (10.0.0.3) wins.
    let (c, full) = both(
        &r,
        "10.0.0.5:1",
        &[("X-Forwarded-For", "1.1.1.1, garbage, 10.0.0.3")],
    );
    assert_eq!(ip(&c), "10.0.0.3");
    let step = full.decisive().unwrap();
    assert_eq!(step.stop, Stop::Unparsable);
    assert!(step.stop.is_flagged());
    assert!(matches!(step.hops[1].verdict, Verdict::Unusable(_)));
    assert!(matches!(step.hops[0].verdict, Verdict::NotReached));
    // Garbage right at the end: the trusted peer stays the answer.
    let (c, _) = both(
        &r,
        "10.0.0.5:1",
        &[("X-Forwarded-For", "1.1.1.1, 999.1.1.1")],
    );
    assert_eq!(c.unwrap().source, Source::Peer);
}

#[test]
fn mapped_and_zoned_entries() {
    let r = resolver(TEN, "rightmost-trusted-range");
    // A mapped trusted entry is trusted as IPv4.
    let (c, _) = both(
        &r,
        "10.0.0.5:1",
        &[("X-Forwarded-For", "7.7.7.7, ::ffff:10.0.0.9")],
    );
    assert_eq!(ip(&c), "7.7.7.7");
    // A zone changes nothing: the address is judged without it, and a
    // zoned mapped address is unmapped before the trust check.
    let (c, _) = both(
        &r,
        "10.0.0.5:1",
        &[("X-Forwarded-For", "7.7.7.7, ::ffff:10.0.0.9%eth0")],
    );
    assert_eq!(ip(&c), "7.7.7.7");
    let r = resolver(&["any"], "rightmost-trusted-range");
    let (c, full) = both(
        &r,
        "10.0.0.5:1",
        &[("X-Forwarded-For", "7.7.7.7, fe80::1%eth0")],
    );
    assert_eq!(
        (ip(&c), c.unwrap().source.to_string()),
        ("7.7.7.7".into(), "X-Forwarded-For[0]".into())
    );
    assert_eq!(
        full.hops()[1].addr.to_string(),
        "fe80::1%eth0",
        "the zone is still shown"
    );
    assert_eq!(full.hops()[1].verdict.trusted(), Some(true));
    // Link-local with a zone is not public.
    let r = resolver(&[], "rightmost-non-private");
    let (c, _) = both(
        &r,
        "10.0.0.5:1",
        &[("X-Forwarded-For", "7.7.7.7, fe80::1%eth0")],
    );
    assert_eq!(ip(&c), "7.7.7.7");
    // A public address keeps its zone for display; the answer has none.
    let (c, full) = both(
        &r,
        "10.0.0.5:1",
        &[("X-Forwarded-For", "2607:f8b0:4004:83f::18%eth0, 10.0.0.1")],
    );
    assert_eq!(ip(&c), "2607:f8b0:4004:83f::18");
    assert_eq!(
        full.hops()[0].addr.to_string(),
        "2607:f8b0:4004:83f::18%eth0"
    );
}

#[test]
fn forwarded_rfc7239() {
    let r = resolver(TEN, "rightmost-trusted-range:Forwarded");
    let (c, _) = both(
        &r,
        "10.0.0.5:1",
        &[(
            "Forwarded",
            "for=192.0.2.60;proto=http;by=203.0.113.43, for=\"[2001:db8:cafe::17]:4711\"",
        )],
    );
    let c = c.unwrap();
    assert_eq!(c.ip.to_string(), "2001:db8:cafe::17");
    assert_eq!(c.port, Some(4711));
    assert_eq!(
        c.source,
        Source::Header {
            name: "Forwarded".into(),
            index: 1
        }
    );
}

#[test]
fn forwarded_obfuscated_stops_never_skipped() {
    // axum-client-ip #32: skipping `_hidden` would let the forged 1.2.3.4 win.
    let r = resolver(TEN, "rightmost-trusted-range:Forwarded");
    for fwd in [
        "for=\"1.2.3.4\", for=\"_hidden\"",
        "for=1.2.3.4, for=unknown",
        "for=1.2.3.4, proto=https",
    ] {
        let (c, full) = both(&r, "10.0.0.5:1", &[("Forwarded", fwd)]);
        assert_ne!(ip(&c), "1.2.3.4", "{fwd}");
        assert_eq!(c.unwrap().source, Source::Peer, "{fwd}");
        assert_eq!(full.decisive().unwrap().stop, Stop::Opaque, "{fwd}");
    }
}

#[test]
fn forwarded_sabotage_cannot_hide_the_client() {
    // The client sends an unclosed quote; its trusted proxy appends the real address.
    let r = resolver(TEN, "rightmost-trusted-range:Forwarded");
    let (c, _) = both(
        &r,
        "10.0.0.5:1",
        &[("Forwarded", "for=\"1.1.1.1"), ("Forwarded", "for=8.8.8.8")],
    );
    assert_eq!(ip(&c), "8.8.8.8");
    let (c, _) = both(
        &r,
        "10.0.0.5:1",
        &[("Forwarded", "for=\"1.1.1.1, for=8.8.8.8")],
    );
    assert_eq!(ip(&c), "8.8.8.8");
}

#[test]
fn trusted_count() {
    let r = resolver(&[], "rightmost-trusted-count:2");
    let xff = [(
        "X-Forwarded-For",
        "203.0.113.128, 203.0.113.10, 203.0.113.1",
    )];
    let (c, full) = both(&r, "192.0.2.5:1", &xff);
    assert_eq!(ip(&c), "203.0.113.10");
    let hops = full.hops();
    assert!(matches!(hops[0].verdict, Verdict::NotReached));
    assert!(matches!(hops[1].verdict, Verdict::Believed(_)));
    assert_eq!(hops[2].verdict.trusted(), Some(true));
    let r1 = resolver(&[], "rightmost-trusted-count:1");
    assert_eq!(ip(&both(&r1, "192.0.2.5:1", &xff).0), "203.0.113.1");
    // Too few entries: the peer.
    let r5 = resolver(&[], "rightmost-trusted-count:5");
    let (c, full) = both(&r5, "192.0.2.5:1", &xff);
    assert_eq!(ip(&c), "192.0.2.5");
    assert_eq!(
        full.decisive().unwrap().stop,
        Stop::TooFewEntries { have: 3, count: 5 }
    );
    // The counted entry is garbage: no answer.
    let (c, _) = both(
        &r,
        "192.0.2.5:1",
        &[("X-Forwarded-For", "1.1.1.1, nope, 2.2.2.2")],
    );
    assert!(c.is_none());
}

#[test]
fn non_private() {
    let r = resolver(&[], "rightmost-non-private");
    let (c, _) = both(
        &r,
        "10.0.0.5:1",
        &[("X-Forwarded-For", "1.1.1.1, 8.8.8.8, 10.0.0.1")],
    );
    assert_eq!(ip(&c), "8.8.8.8");
    // A public peer: its headers are not read and there is no answer, so
    // a chain goes on to the next strategy ...
    let (c, full) = both(&r, "8.8.4.4:1", &[("X-Forwarded-For", "1.1.1.1")]);
    assert!(c.is_none());
    assert_eq!(full.decisive().unwrap().stop, Stop::PeerPublic);
    assert_eq!(full.hops()[1].verdict.trusted(), Some(false));
    // ... such as remote-addr, the labelled last resort.
    let rr = resolver(&[], "rightmost-non-private, remote-addr");
    let (c, full) = both(&rr, "8.8.4.4:1", &[("X-Forwarded-For", "1.1.1.1")]);
    assert_eq!(
        (ip(&c), c.unwrap().source),
        ("8.8.4.4".into(), Source::Peer)
    );
    assert_eq!(full.steps.len(), 2);
    // Documentation, benchmarking and other special-purpose blocks are not
    // public: skipped like private proxies, and said why.
    let (c, full) = both(
        &r,
        "10.0.0.5:1",
        &[(
            "X-Forwarded-For",
            "8.8.8.8, 203.0.113.7, 198.18.0.1, 2001:db8::1",
        )],
    );
    assert_eq!(ip(&c), "8.8.8.8");
    assert_eq!(
        full.hops()[1].verdict,
        Verdict::Trusted("203.0.113.0/24 (documentation TEST-NET-3, RFC 5737)".into())
    );
    // A peer in one of them counts as a private proxy.
    let (c, _) = both(&r, "198.51.100.1:1", &[("X-Forwarded-For", "8.8.8.8")]);
    assert_eq!(ip(&c), "8.8.8.8");
    // Only private entries: no answer.
    let (c, full) = both(
        &r,
        "10.0.0.5:1",
        &[("X-Forwarded-For", "192.168.1.1, 10.0.0.1")],
    );
    assert!(c.is_none());
    assert_eq!(full.decisive().unwrap().stop, Stop::NothingQualified);

    let l = resolver(&[], "leftmost-non-private");
    let (c, full) = both(
        &l,
        "10.0.0.5:1",
        &[("X-Forwarded-For", "192.168.0.9, bad, 1.1.1.1, 8.8.8.8")],
    );
    assert_eq!(ip(&c), "1.1.1.1");
    let hops = full.hops();
    assert!(matches!(hops[0].verdict, Verdict::Skipped(_)));
    assert!(matches!(hops[1].verdict, Verdict::Unusable(_)));
    assert!(matches!(hops[3].verdict, Verdict::NotReached));
    let (c, full) = both(&l, "8.8.4.4:1", &[("X-Forwarded-For", "1.1.1.1")]);
    assert!(c.is_none());
    assert_eq!(full.decisive().unwrap().stop, Stop::PeerPublic);
    assert_eq!(
        full.hops()[0].verdict,
        Verdict::NotReached,
        "a public peer's header is not read"
    );
}

#[test]
fn a_strategy_without_an_answer_hands_on() {
    // The chain of issue 10: a public trusted peer (a CDN) sends X-Real-IP.
    let r = resolver(
        &["8.8.4.0/24"],
        "rightmost-non-private, single-header:X-Real-IP",
    );
    let h = [("X-Real-IP", "1.2.3.4"), ("X-Forwarded-For", "5.5.5.5")];
    let (c, full) = both(&r, "8.8.4.4:1", &h);
    assert_eq!(ip(&c), "1.2.3.4");
    assert_eq!(full.steps[0].stop, Stop::PeerPublic);
    // A private peer whose chain is all private hands on too.
    let h = [("X-Real-IP", "1.2.3.4"), ("X-Forwarded-For", "10.1.1.1")];
    let r = resolver(
        TEN,
        "leftmost-non-private, rightmost-non-private, single-header:X-Real-IP",
    );
    let (c, full) = both(&r, "10.0.0.5:1", &h);
    assert_eq!(ip(&c), "1.2.3.4");
    assert_eq!(full.steps.len(), 3);
    // Nothing answers: no client, and the last step says why.
    let r = resolver(&[], "rightmost-non-private, single-header:X-Real-IP");
    let (c, full) = both(&r, "8.8.4.4:1", &h);
    assert!(c.is_none());
    assert_eq!(full.steps.len(), 2);
    assert_eq!(
        full.decisive().unwrap().stop,
        Stop::EvidenceUntrusted("header")
    );
}

#[test]
fn an_unspecified_peer_is_never_an_answer() {
    for strategy in [
        "remote-addr",
        "rightmost-trusted-range",
        "rightmost-trusted-count:1",
        "rightmost-non-private",
        "leftmost-non-private",
        "single-header:X-Real-IP",
    ] {
        let r = resolver(&["any"], strategy);
        for p in ["0.0.0.0:1", "[::]:1", "[::ffff:0.0.0.0]:1"] {
            let (c, full) = both(
                &r,
                p,
                &[("X-Forwarded-For", "1.1.1.1"), ("X-Real-IP", "1.1.1.1")],
            );
            assert!(c.is_none(), "{strategy} {p}");
            let step = full.decisive().unwrap();
            assert_eq!(step.stop, Stop::PeerUnspecified);
            assert!(matches!(
                step.hops.last().unwrap().verdict,
                Verdict::Unusable(_)
            ));
        }
    }
}

#[test]
fn single_header() {
    let r = resolver(TEN, "single-header:X-Real-IP");
    let (c, _) = both(&r, "10.0.0.5:1", &[("X-Real-IP", "1.2.3.4")]);
    assert_eq!(ip(&c), "1.2.3.4");
    // From an untrusted peer a forged X-Real-IP is not believed.
    let (c, full) = both(&r, "9.9.9.9:1", &[("X-Real-IP", "1.2.3.4")]);
    assert!(c.is_none());
    assert_eq!(
        full.decisive().unwrap().stop,
        Stop::EvidenceUntrusted("header")
    );
    // Two instances are an error.
    let (c, full) = both(
        &r,
        "10.0.0.5:1",
        &[("X-Real-IP", "1.2.3.4"), ("x-real-ip", "5.6.7.8")],
    );
    assert!(c.is_none());
    assert!(full
        .decisive()
        .unwrap()
        .stop
        .to_string()
        .contains("2 times"));
    let (c, _) = both(&r, "10.0.0.5:1", &[("X-Real-IP", "1.2.3.4, 5.6.7.8")]);
    assert!(c.is_none());
}

#[test]
fn proxy_toa_field_need_a_trusted_peer() {
    let h: Vec<(&str, &str)> = vec![];
    for (strategy, source) in [
        ("proxy-protocol", Source::ProxyProtocol),
        ("toa", Source::Toa),
        ("client-field", Source::ClientField),
    ] {
        let r = resolver(&["127.0.0.1"], strategy);
        let mut req = Request::new(peer("127.0.0.1:9"), &h);
        req.proxy = Some(ProxyClaim::Source("192.0.2.1:5555".parse().unwrap()));
        req.toa = Some("192.0.2.1:5555".parse().unwrap());
        req.field = Some("192.0.2.1".parse().unwrap());
        let c = r.resolve(&req).unwrap();
        assert_eq!(
            (c.ip.to_string(), c.source.clone()),
            ("192.0.2.1".into(), source)
        );
        assert_eq!(r.explain(&req).client, Some(c));
        // The same claim from 127.0.0.2 is not believed.
        req.peer = realip_core::PeerAddr(peer("127.0.0.2:9"));
        assert_eq!(r.resolve(&req), None, "{strategy}");
        let full = r.explain(&req);
        assert!(matches!(
            full.decisive().unwrap().stop,
            Stop::EvidenceUntrusted(_)
        ));
        // Missing evidence: no answer.
        let bare = Request::new(peer("127.0.0.1:9"), &h);
        assert_eq!(r.resolve(&bare), None);
    }
    let r = resolver(&["127.0.0.1"], "proxy-protocol");
    let mut req = Request::new(peer("127.0.0.1:9"), &h);
    req.proxy = Some(ProxyClaim::NoAddress);
    assert_eq!(r.resolve(&req).unwrap().source, Source::Peer);
    assert_eq!(
        r.explain(&req).decisive().unwrap().stop,
        Stop::ProxyNoAddress
    );
}

#[test]
fn chain_first_answer_wins() {
    let r = resolver(
        &["127.0.0.1"],
        "proxy-protocol, rightmost-trusted-range, remote-addr",
    );
    let h = vec![("X-Forwarded-For", "5.5.5.5")];
    let req = Request::new(peer("127.0.0.1:9"), &h);
    let full = r.explain(&req);
    assert_eq!(ip(&full.client), "5.5.5.5");
    assert_eq!(full.steps.len(), 2);
    assert_eq!(full.steps[0].stop, Stop::NoEvidence("PROXY header"));
    assert_eq!(r.resolve(&req), full.client);
    let r = resolver(&[], "single-header:X-Real-IP, remote-addr");
    let req = Request::new(peer("9.9.9.9:9"), &h);
    assert_eq!(ip(&r.resolve(&req)), "9.9.9.9");
}

#[test]
fn json_shape() {
    let r = resolver(TEN, "rightmost-trusted-range");
    let (_, full) = both(
        &r,
        "10.0.0.5:555",
        &[("X-Forwarded-For", "3.3.3.3, 10.0.0.1")],
    );
    let v = serde_json::to_value(realip_core::json::JsonResolution::from(&full)).unwrap();
    assert_eq!(v["client"]["ip"], "3.3.3.3");
    assert_eq!(v["client"]["port"], serde_json::Value::Null);
    assert_eq!(v["client"]["source"], "header");
    assert_eq!(v["client"]["header"], "X-Forwarded-For");
    let hops = v["hops"].as_array().unwrap();
    assert_eq!(hops.len(), 3);
    assert_eq!(hops[0]["addr"], "3.3.3.3");
    assert_eq!(hops[0]["trusted"], false);
    assert_eq!(hops[0]["answer"], true);
    assert_eq!(hops[1]["trusted"], true);
    assert_eq!(hops[2]["source"], "peer");
    assert_eq!(hops[2]["addr"], "10.0.0.5:555");
}
