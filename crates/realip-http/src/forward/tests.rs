//! The forwarding plan's unit tests.
use super::*;
use realip_core::{Strategy, TrustSet};

fn fwd(trusted: &[&str], set: HeaderSet, xff: XffMode) -> Forwarding {
    Forwarding {
        headers: set,
        xff,
        underscores: Underscores::Drop,
        resolver: realip_core::Resolver::new(
            TrustSet::parse(trusted.iter().copied()).unwrap(),
            vec!["rightmost-trusted-range".parse::<Strategy>().unwrap()],
        ),
    }
}

fn facts(peer: &str) -> RequestFacts<'static> {
    RequestFacts {
        peer: peer.parse().unwrap(),
        local: "127.0.0.1:8443".parse().unwrap(),
        scheme: "https",
        host: Some("shop.example"),
        target: "/a?b=1",
    }
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(*n, HeaderValue::from_static(v));
    }
    h
}

#[test]
fn underscore_spellings_of_forwarding_headers_never_pass() {
    // Puma CVE-2024-45614: X_Forwarded_For reads as HTTP_X_FORWARDED_FOR.
    let mut f = fwd(&["10.0.0.0/8"], HeaderSet::ingress(), XffMode::Append);
    let ids = RequestIds::default();
    for underscores in [Underscores::Drop, Underscores::Pass] {
        f.underscores = underscores;
        let mut h = headers(&[
            ("x_forwarded_for", "1.2.3.4"),
            ("x-forwarded_for", "1.2.3.4"),
            ("x_real_ip", "1.2.3.4"),
            ("x_original_forwarded_for", "1.2.3.4"),
            ("x_app_token", "t"),
        ]);
        f.apply(&mut h, &facts("9.9.9.9:1"), &ids);
        let names: Vec<&str> = h.keys().map(|n| n.as_str()).collect();
        assert!(
            h.iter().all(|(_, v)| v != "1.2.3.4"),
            "{underscores:?}: {names:?}"
        );
        assert_eq!(
            h.contains_key("x_app_token"),
            underscores == Underscores::Pass
        );
        // From a trusted peer too: what we set replaces every spelling.
        let mut h = headers(&[("x_forwarded_for", "1.2.3.4"), ("x_real_ip", "1.2.3.4")]);
        f.apply(&mut h, &facts("10.0.0.1:1"), &ids);
        assert!(h.iter().all(|(_, v)| v != "1.2.3.4"), "{underscores:?}");
    }
    assert!(same_name(b"X_Forwarded-FOR", "x-forwarded-for"));
    assert!(!same_name(b"x-forwarded-fo", "x-forwarded-for"));
}

#[test]
fn an_untrusted_peer_restarts_the_chain() {
    let f = fwd(&["10.0.0.0/8"], HeaderSet::ingress(), XffMode::Append);
    let mut h = headers(&[
        ("x-forwarded-for", "1.2.3.4"),
        ("x-real-ip", "1.2.3.4"),
        ("forwarded", "for=1.2.3.4"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil"),
        ("x-request-id", "forged"),
        ("x-original-forwarded-for", "1.2.3.4"),
    ]);
    let ids = RequestIds::default();
    let mut fx = facts("9.9.9.9:1234");
    fx.scheme = "http";
    let r = f.apply(&mut h, &fx, &ids);
    assert_eq!(r.client.to_string(), "9.9.9.9");
    assert!(!r.peer_trusted);
    assert_eq!(h["x-forwarded-for"], "9.9.9.9");
    assert_eq!(h["x-real-ip"], "9.9.9.9");
    assert!(h.get("forwarded").is_none());
    assert!(h.get("x-original-forwarded-for").is_none());
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "shop.example");
    assert_eq!(h["x-forwarded-port"], "8443");
    assert_eq!(h["x-original-uri"], "/a?b=1");
    assert_eq!(h["x-scheme"], "http");
    assert_ne!(h["x-request-id"], "forged");
    assert_eq!(h["x-request-id"].len(), 32);
    for n in STRIPPED {
        assert!(h.get_all(n).iter().count() <= 1, "{n}");
    }
}

#[test]
fn a_trusted_peer_keeps_the_chain_and_names_the_client() {
    let f = fwd(&["10.0.0.0/8"], HeaderSet::ingress(), XffMode::Append);
    let mut h = headers(&[
        ("x-forwarded-for", "2.2.2.2, 3.3.3.3"),
        ("x-forwarded-for", "10.0.0.7"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "front.example"),
        ("x-request-id", "abc-123"),
    ]);
    let r = f.apply(&mut h, &facts("10.0.0.5:555"), &RequestIds::default());
    assert_eq!(r.client.to_string(), "3.3.3.3");
    assert_eq!(h["x-forwarded-for"], "2.2.2.2, 3.3.3.3, 10.0.0.7, 10.0.0.5");
    assert_eq!(h["x-real-ip"], "3.3.3.3");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "front.example");
    assert_eq!(h["x-request-id"], "abc-123");
    let mut h = headers(&[("x-forwarded-for", "3.3.3.3")]);
    let f = fwd(&["10.0.0.0/8"], HeaderSet::ingress(), XffMode::Client);
    f.apply(&mut h, &facts("10.0.0.5:555"), &RequestIds::default());
    assert_eq!(h["x-forwarded-for"], "3.3.3.3");
}

#[test]
fn request_ids_are_checked_and_unique() {
    let f = fwd(
        &["any"],
        [Header::XRequestId].into_iter().collect(),
        XffMode::Append,
    );
    let ids = RequestIds::default();
    for bad in ["", "has space", "two\u{7f}"] {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(bad) {
            h.insert("x-request-id", v);
        }
        f.apply(&mut h, &facts("10.0.0.5:1"), &ids);
        assert_eq!(h["x-request-id"].len(), 32, "{bad:?}");
    }
    let mut h = headers(&[("x-request-id", "a"), ("x-request-id", "b")]);
    f.apply(&mut h, &facts("10.0.0.5:1"), &ids);
    assert_eq!(h.get_all("x-request-id").iter().count(), 1);
    assert_eq!(h["x-request-id"].len(), 32);
    let a = ids.next();
    assert_ne!(a, ids.next());
    assert!(!valid_request_id(&[b'a'; 129]));
    // Only the headers asked for are added.
    assert!(h.get("x-forwarded-for").is_none());
}

#[test]
fn forwarded_elements_are_appended_and_quoted() {
    let f = fwd(
        &["::1"],
        [Header::Forwarded].into_iter().collect(),
        XffMode::Append,
    );
    let mut h = headers(&[("forwarded", "for=192.0.2.60;proto=http")]);
    let r = f.apply(&mut h, &facts("[::1]:9"), &RequestIds::default());
    assert_eq!(r.client.to_string(), "::1");
    assert_eq!(
        h["forwarded"],
        "for=192.0.2.60;proto=http, for=\"[::1]\";proto=https;host=shop.example"
    );
    let mut fx = facts("127.0.0.9:9");
    fx.host = Some("shop.example:8443");
    let mut h = HeaderMap::new();
    f.apply(&mut h, &fx, &RequestIds::default());
    assert_eq!(
        h["forwarded"],
        "for=127.0.0.9;proto=https;host=\"shop.example:8443\""
    );
}

#[test]
fn header_names_parse() {
    assert_eq!("X-Real-IP".parse::<Header>(), Ok(Header::XRealIp));
    assert!("x-nope"
        .parse::<Header>()
        .unwrap_err()
        .to_string()
        .contains("x-request-id"));
    assert!(HeaderSet::ingress().has(Header::XScheme));
    assert!(!HeaderSet::ingress().has(Header::Forwarded));
}
