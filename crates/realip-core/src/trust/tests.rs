// The trust set's unit tests, kept beside trust.rs to keep it short.

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
fn a_zone_never_changes_trust() {
    for trust in [
        &["any"][..],
        &["fe80::/10"],
        &["10.0.0.0/8"],
        &["private"],
        &[],
    ] {
        let set = TrustSet::parse(trust.iter().copied()).unwrap();
        for (zoned, bare) in [
            ("fe80::1%eth0", "fe80::1"),
            ("[fe80::1%eth0]:80", "fe80::1"),
            ("::ffff:10.0.0.9%eth0", "10.0.0.9"),
            ("2001:db8::1%7", "2001:db8::1"),
        ] {
            let z = Addr::parse(zoned).unwrap();
            let b = Addr::parse(bare).unwrap();
            assert_eq!(set.trusts(&z), set.trusts(&b), "{trust:?} {zoned}");
        }
    }
    let set = TrustSet::parse(["10.0.0.0/8"]).unwrap();
    assert!(set.trusts(&Addr::parse("::ffff:10.0.0.9%eth0").unwrap()));
}

#[test]
fn not_public_follows_the_special_purpose_registries() {
    for a in [
        "0.1.2.3",
        "10.0.0.1",
        "100.64.0.1",
        "100.127.255.255",
        "127.0.0.2",
        "169.254.1.1",
        "172.16.0.1",
        "192.0.0.8",
        "192.0.0.170",
        "192.0.2.60",
        "192.88.99.1",
        "192.168.1.1",
        "198.18.5.5",
        "198.19.255.255",
        "198.51.100.7",
        "203.0.113.7",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "64:ff9b:1::a00:1",
        "100::1",
        "2001:2::1",
        "2001:1::4",
        "2001:10::1",
        "2001:db8::1",
        "3fff::1",
        "5f00::1",
        "fc00::1",
        "fd12:3456:789a:1::1",
        "fe80::abcd",
        "ff02::1",
        "::ffff:192.168.1.1",
        "::ffff:203.0.113.7",
    ] {
        assert!(not_public(ip(a)).is_some(), "{a} should not be public");
    }
    for a in [
        "1.1.1.1",
        "8.8.8.8",
        "100.63.255.255",
        "100.128.0.1",
        "172.32.0.1",
        "192.0.0.9",
        "192.0.0.10",
        "192.0.1.1",
        "192.18.5.5",
        "198.17.255.255",
        "198.20.0.1",
        "203.0.114.1",
        "223.255.255.255",
        "::ffff:188.0.2.128",
        "2607:f8b0:4004:83f::18",
        "64:ff9b::bc00:280",
        "2001::1",
        "2001:1::1",
        "2001:3::1",
        "2001:4:112::1",
        "2001:20::1",
        "2001:30::1",
        "2002:c000:204::",
        "2001:db9::1",
        "3fff:1000::1",
        "2400:cb00::1",
    ] {
        assert_eq!(not_public(ip(a)), None, "{a} should be public");
    }
    assert_eq!(
        not_public(ip("203.0.113.7")),
        Some("203.0.113.0/24 (documentation TEST-NET-3, RFC 5737)")
    );
    // The private preset and loopback are a subset.
    for a in [
        "10.0.0.1",
        "100.64.0.1",
        "127.0.0.1",
        "::1",
        "fc00::1",
        "fe80::1",
        "169.254.0.1",
    ] {
        assert!(
            is_private_or_loopback(ip(a)) && not_public(ip(a)).is_some(),
            "{a}"
        );
    }
}

#[test]
fn the_table_is_well_formed() {
    // No host bits set, so every row can match.
    for &(n, p, _) in NOT_PUBLIC_V4 {
        assert_eq!(n & mask4(p), n, "{n:#x}/{p}");
    }
    for &(n, p, _) in NOT_PUBLIC_V6 {
        assert_eq!(n & mask6(p), n, "{n:#x}/{p}");
    }
    // Each label names its own row's network.
    for &(n, p, l) in NOT_PUBLIC_V4 {
        if let Some(l) = l {
            assert!(l.starts_with(&format!("{}/{p} ", Ipv4Addr::from(n))), "{l}");
        }
    }
    for &(n, p, l) in NOT_PUBLIC_V6 {
        if let Some(l) = l {
            assert!(l.starts_with(&format!("{}/{p} ", Ipv6Addr::from(n))), "{l}");
        }
    }
    assert_eq!(not_public_blocks().count(), 16 + 12);
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
