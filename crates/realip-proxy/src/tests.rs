use super::*;
use proptest::prelude::*;
use std::net::{SocketAddrV4, SocketAddrV6};

fn cfg() -> ParseConfig {
    ParseConfig::default()
}

fn complete(buf: &[u8]) -> Header<'_> {
    match parse(buf, &cfg()) {
        Ok(Parsed::Complete(h)) => h,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}

#[test]
fn v1_tcp4() {
    let line = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET /";
    let h = complete(line);
    assert_eq!(h.version, Version::V1);
    assert_eq!(
        h.addresses.source(),
        Some("192.168.0.1:56324".parse().unwrap())
    );
    assert_eq!(
        h.addresses.destination(),
        Some("192.168.0.11:443".parse().unwrap())
    );
    assert_eq!(h.header_len(), line.len() - 5);
}

#[test]
fn v1_tcp6_and_unknown() {
    let h = complete(b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n");
    assert_eq!(
        h.addresses.source(),
        Some("[2001:db8::1]:1".parse().unwrap())
    );
    let h = complete(b"PROXY UNKNOWN\r\n");
    assert_eq!(h.addresses, Addresses::Unspec);
    assert_eq!(h.header_len(), 15);
    // The spec's worst case: 107 bytes.
    let worst = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(worst.len(), 107);
    assert_eq!(complete(worst).header_len(), 107);
}

#[test]
fn v1_invalid() {
    let bad: &[&[u8]] = &[
        b"PROXY TCP4 1.2.3.4 5.6.7.8 080 80\r\n",
        b"PROXY TCP4 1.2.3.4  5.6.7.8 80 80\r\n",
        b"PROXY TCP4 ::1 5.6.7.8 80 80\r\n",
        b"PROXY TCP6 1.2.3.4 ::1 80 80\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 80\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 80\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 80 80 80\r\n",
        b"PROXY TCP4 01.2.3.4 5.6.7.8 80 80\r\n",
        b"PROXY UDP4 1.2.3.4 5.6.7.8 80 80\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 80 80\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 80 80\rX",
        b"proxy TCP4 1.2.3.4 5.6.7.8 80 80\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 80 -1\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 80 8\x000\r\n",
    ];
    for b in bad {
        assert!(
            parse(b, &cfg()).is_err(),
            "{:?}",
            String::from_utf8_lossy(b)
        );
    }
    // No CRLF within 107 bytes.
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(107, b'a');
    assert_eq!(parse_v1(&long), Err(Error::V1TooLong));
    long.truncate(106);
    assert_eq!(parse_v1(&long), Ok(Parsed::Incomplete { needed: 1 }));
}

#[test]
fn v1_prefixes_are_incomplete() {
    let line = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    for n in 0..line.len() {
        match parse(&line[..n], &cfg()) {
            Ok(Parsed::Incomplete { needed }) => assert!(needed >= 1 && needed <= line.len() - n),
            other => panic!("prefix {n}: {other:?}"),
        }
    }
}

fn v2(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut v = SIGNATURE.to_vec();
    v.push(cmd);
    v.push(fam);
    v.extend_from_slice(&(body.len() as u16).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// What HAProxy's `send-proxy-v2` writes for 192.0.2.1:51000 -> 10.0.0.1:80,
/// built by hand from the spec.
fn haproxy_v4() -> Vec<u8> {
    v2(0x21, 0x11, &[192, 0, 2, 1, 10, 0, 0, 1, 0xc7, 0x38, 0, 80])
}

#[test]
fn v2_ipv4_by_hand() {
    let mut b = haproxy_v4();
    b.extend_from_slice(b"payload");
    let h = complete(&b);
    assert_eq!(h.version, Version::V2);
    assert_eq!(h.command, Command::Proxy);
    assert_eq!(h.transport, Transport::Stream);
    assert_eq!(
        h.addresses.source(),
        Some("192.0.2.1:51000".parse().unwrap())
    );
    assert_eq!(
        h.addresses.destination(),
        Some("10.0.0.1:80".parse().unwrap())
    );
    assert_eq!(h.header_len(), 28);
    assert_eq!(h.tlvs().count(), 0);
}

#[test]
fn v2_families_and_local() {
    let mut body = vec![0u8; 36];
    body[15] = 1;
    body[31] = 2;
    body[32..34].copy_from_slice(&443u16.to_be_bytes());
    body[34..36].copy_from_slice(&80u16.to_be_bytes());
    let b1 = v2(0x21, 0x21, &body);
    let h = complete(&b1);
    assert_eq!(h.addresses.source(), Some("[::1]:443".parse().unwrap()));
    let mut unix = vec![0u8; 216];
    unix[..4].copy_from_slice(b"/tmp");
    let b2 = v2(0x21, 0x31, &unix);
    let h = complete(&b2);
    assert!(matches!(h.addresses, Addresses::Unix { src, .. } if &src[..4] == b"/tmp"));
    // LOCAL: addresses discarded, `len` bytes still skipped.
    let b3 = v2(0x20, 0x11, &[1u8; 20]);
    let h = complete(&b3);
    assert_eq!(
        (h.command, h.addresses, h.header_len()),
        (Command::Local, Addresses::Unspec, 36)
    );
    let b4 = v2(0x20, 0x00, &[]);
    let h = complete(&b4);
    assert_eq!(h.addresses, Addresses::Unspec);
    let b5 = v2(0x21, 0x00, &[9, 9]);
    let h = complete(&b5);
    assert_eq!((h.addresses, h.header_len()), (Addresses::Unspec, 18));
    let b6 = v2(0x21, 0x12, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 53, 0, 53]);
    let h = complete(&b6);
    assert_eq!(h.transport, Transport::Dgram);
}

#[test]
fn v2_invalid() {
    let ok_body = [192, 0, 2, 1, 10, 0, 0, 1, 0, 1, 0, 80];
    assert_eq!(
        parse(&v2(0x11, 0x11, &ok_body), &cfg()),
        Err(Error::V2Version(1))
    );
    assert_eq!(
        parse(&v2(0x22, 0x11, &ok_body), &cfg()),
        Err(Error::V2Command(2))
    );
    assert_eq!(
        parse(&v2(0x21, 0x41, &ok_body), &cfg()),
        Err(Error::V2Family(4))
    );
    assert_eq!(
        parse(&v2(0x21, 0x13, &ok_body), &cfg()),
        Err(Error::V2Transport(3))
    );
    assert_eq!(
        parse(&v2(0x21, 0x11, &ok_body[..8]), &cfg()),
        Err(Error::V2ShortAddress { len: 8, need: 12 })
    );
    assert_eq!(
        parse(&v2(0x21, 0x21, &[0; 20]), &cfg()),
        Err(Error::V2ShortAddress { len: 20, need: 36 })
    );
    // Over the cap: refused from the preamble alone, without waiting.
    let mut big = v2(0x21, 0x11, &ok_body);
    big[14..16].copy_from_slice(&5000u16.to_be_bytes());
    assert_eq!(
        parse(&big[..16], &cfg()),
        Err(Error::V2TooLong {
            len: 5000,
            max: 4096
        })
    );
    // Bad version seen before the preamble is complete.
    let early = v2(0x11, 0x11, &ok_body);
    assert_eq!(parse(&early[..13], &cfg()), Err(Error::V2Version(1)));
    let mut sig = SIGNATURE.to_vec();
    sig[5] = 0;
    assert_eq!(parse(&sig, &cfg()), Err(Error::NotProxy));
    assert_eq!(parse(b"GET / HTTP/1.1\r\n", &cfg()), Err(Error::NotProxy));
}

#[test]
fn v2_prefixes_are_incomplete_with_exact_counts() {
    let mut h = OwnedHeader::tcp(
        Version::V2,
        "192.0.2.1:1".parse().unwrap(),
        "10.0.0.1:2".parse().unwrap(),
    );
    h.tlvs.push(OwnedTlv::Alpn(b"h2".to_vec()));
    let b = encode_v2(&h, true).unwrap();
    for n in 0..b.len() {
        match parse(&b[..n], &cfg()) {
            Ok(Parsed::Incomplete { needed }) => {
                if n >= 16 {
                    assert_eq!(needed, b.len() - n, "prefix {n}");
                } else {
                    assert!(needed >= 1 && n + needed <= 16, "prefix {n}: {needed}");
                }
            }
            other => panic!("prefix {n}: {other:?}"),
        }
    }
    assert!(matches!(parse(&b, &cfg()), Ok(Parsed::Complete(_))));
}

#[test]
fn tlvs_decode() {
    let mut h = OwnedHeader::tcp(
        Version::V2,
        "192.0.2.1:1".parse().unwrap(),
        "10.0.0.1:2".parse().unwrap(),
    );
    h.tlvs = vec![
        OwnedTlv::Alpn(b"h2".to_vec()),
        OwnedTlv::Authority("example.com".into()),
        OwnedTlv::UniqueId(vec![7; 128]),
        OwnedTlv::Ssl {
            client: 0x07,
            verify: 0,
            sub: vec![
                (tlv_type::SSL_VERSION, b"TLSv1.3".to_vec()),
                (tlv_type::SSL_CN, b"client".to_vec()),
                (0x2f, vec![1]),
            ],
        },
        OwnedTlv::Netns("blue".into()),
        OwnedTlv::Aws {
            subtype: 1,
            value: b"vpce-0123".to_vec(),
        },
        OwnedTlv::Azure {
            subtype: 1,
            value: 0x1234_5678u32.to_le_bytes().to_vec(),
        },
        OwnedTlv::Gcp {
            psc_connection_id: 0x0102_0304_0506_0708,
        },
        OwnedTlv::Unknown {
            kind: 0xF0,
            value: vec![1, 2, 3],
        },
        OwnedTlv::Noop(vec![0; 3]),
    ];
    let b = encode_v2(&h, true).unwrap();
    let parsed = complete(&b);
    let tlvs: Vec<Tlv<'_>> = parsed.tlvs().collect();
    assert_eq!(tlvs[0], Tlv::Alpn(b"h2"));
    assert_eq!(tlvs[1], Tlv::Authority("example.com"));
    let Tlv::Ssl(ssl) = tlvs[3] else { panic!() };
    assert_eq!((ssl.client, ssl.verify), (7, 0));
    assert_eq!(ssl.get(tlv_type::SSL_VERSION), Some(&b"TLSv1.3"[..]));
    assert_eq!(ssl.sub_tlvs().count(), 3);
    assert_eq!(tlvs[4], Tlv::Netns("blue"));
    assert_eq!(tlvs[5].aws_vpce_id(), Some("vpce-0123"));
    assert_eq!(tlvs[6].azure_link_id(), Some(0x1234_5678));
    assert_eq!(
        tlvs[7],
        Tlv::Gcp {
            psc_connection_id: 0x0102_0304_0506_0708
        }
    );
    assert_eq!(
        tlvs[8],
        Tlv::Unknown {
            kind: 0xF0,
            value: &[1, 2, 3]
        }
    );
    assert!(matches!(tlvs.last(), Some(Tlv::Crc32c(_))));
    assert_eq!(parsed.to_owned(), h);
}

#[test]
fn crc32c_checked() {
    let h = OwnedHeader::tcp(
        Version::V2,
        "192.0.2.1:1".parse().unwrap(),
        "10.0.0.1:2".parse().unwrap(),
    );
    let mut b = encode_v2(&h, true).unwrap();
    assert!(matches!(parse(&b, &cfg()), Ok(Parsed::Complete(_))));
    // Flip one address bit: the checksum no longer matches.
    b[16] ^= 1;
    assert!(matches!(parse(&b, &cfg()), Err(Error::CrcMismatch { .. })));
    b[16] ^= 1;
    let last = b.len() - 1;
    b[last] ^= 0xff;
    assert!(matches!(parse(&b, &cfg()), Err(Error::CrcMismatch { .. })));
}

#[test]
fn tlv_bounds() {
    let addr = [192u8, 0, 2, 1, 10, 0, 0, 1, 0, 1, 0, 80];
    let with = |tlv: &[u8]| {
        let mut body = addr.to_vec();
        body.extend_from_slice(tlv);
        v2(0x21, 0x11, &body)
    };
    assert_eq!(
        parse(&with(&[0x01, 0, 5, b'h']), &cfg()),
        Err(Error::TlvOverrun(1))
    );
    assert_eq!(parse(&with(&[0x01, 0]), &cfg()), Err(Error::TlvOverrun(1)));
    let mut uid = vec![0x05, 0, 129];
    uid.extend_from_slice(&[0; 129]);
    assert_eq!(
        parse(&with(&uid), &cfg()),
        Err(Error::TlvBadLength { kind: 5, len: 129 })
    );
    assert_eq!(
        parse(&with(&[0x02, 0, 1, 0xff]), &cfg()),
        Err(Error::TlvNotUtf8(2))
    );
    assert_eq!(
        parse(&with(&[0x03, 0, 2, 0, 0]), &cfg()),
        Err(Error::TlvBadLength { kind: 3, len: 2 })
    );
    assert_eq!(
        parse(&with(&[0x20, 0, 2, 0, 0]), &cfg()),
        Err(Error::TlvBadLength { kind: 0x20, len: 2 })
    );
    assert_eq!(
        parse(&with(&[0x20, 0, 8, 1, 0, 0, 0, 0, 0x21, 0, 9]), &cfg()),
        Err(Error::TlvOverrun(0x21))
    );
    assert_eq!(
        parse(&with(&[0xEA, 0, 0]), &cfg()),
        Err(Error::TlvBadLength { kind: 0xEA, len: 0 })
    );
    // A GCP TLV of the wrong size is kept raw, not guessed at.
    let b7 = with(&[0xE0, 0, 2, 1, 2]);
    let h = complete(&b7);
    assert_eq!(
        h.tlvs().next(),
        Some(Tlv::Unknown {
            kind: 0xE0,
            value: &[1, 2]
        })
    );
}

#[test]
fn detect_cases() {
    assert_eq!(detect(b""), Detect::NeedMore(1));
    assert_eq!(detect(b"PRO"), Detect::NeedMore(3));
    assert_eq!(detect(b"PROXY "), Detect::V1);
    assert_eq!(detect(b"PROXI"), Detect::Neither);
    assert_eq!(detect(&SIGNATURE[..5]), Detect::NeedMore(7));
    assert_eq!(detect(&SIGNATURE), Detect::V2);
    assert_eq!(detect(b"GET"), Detect::Neither);
}

#[test]
fn encode_v1_forms() {
    let h = OwnedHeader::tcp(
        Version::V1,
        "[2001:db8::1]:1".parse().unwrap(),
        "[::1]:2".parse().unwrap(),
    );
    assert_eq!(
        encode_v1(&h).unwrap(),
        b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n"
    );
    let mut local = h.clone();
    local.command = Command::Local;
    assert_eq!(encode_v1(&local).unwrap(), b"PROXY UNKNOWN\r\n");
    let mut dgram = h;
    dgram.transport = Transport::Dgram;
    assert!(encode_v1(&dgram).is_err());
}

fn arb_addresses() -> impl Strategy<Value = Addresses> {
    prop_oneof![
        Just(Addresses::Unspec),
        (
            any::<[u8; 4]>(),
            any::<u16>(),
            any::<[u8; 4]>(),
            any::<u16>()
        )
            .prop_map(|(a, p, b, q)| Addresses::Ipv4 {
                src: SocketAddrV4::new(a.into(), p),
                dst: SocketAddrV4::new(b.into(), q),
            }),
        (
            any::<[u8; 16]>(),
            any::<u16>(),
            any::<[u8; 16]>(),
            any::<u16>()
        )
            .prop_map(|(a, p, b, q)| Addresses::Ipv6 {
                src: SocketAddrV6::new(a.into(), p, 0, 0),
                dst: SocketAddrV6::new(b.into(), q, 0, 0),
            }),
        (
            proptest::collection::vec(any::<u8>(), 108),
            proptest::collection::vec(any::<u8>(), 108)
        )
            .prop_map(|(a, b)| {
                let mut s = [0u8; 108];
                let mut d = [0u8; 108];
                s.copy_from_slice(&a);
                d.copy_from_slice(&b);
                Addresses::Unix { src: s, dst: d }
            }),
    ]
}

fn arb_tlv() -> impl Strategy<Value = OwnedTlv> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        bytes().prop_map(OwnedTlv::Alpn),
        "[a-z0-9.]{0,30}".prop_map(OwnedTlv::Authority),
        bytes().prop_map(OwnedTlv::Noop),
        proptest::collection::vec(any::<u8>(), 0..=128).prop_map(OwnedTlv::UniqueId),
        (
            any::<u8>(),
            any::<u32>(),
            proptest::collection::vec((0x21u8..=0x28, bytes()), 0..4)
        )
            .prop_map(|(client, verify, sub)| OwnedTlv::Ssl {
                client,
                verify,
                sub
            }),
        "[a-z]{0,12}".prop_map(OwnedTlv::Netns),
        (any::<u8>(), bytes()).prop_map(|(subtype, value)| OwnedTlv::Aws { subtype, value }),
        (any::<u8>(), bytes()).prop_map(|(subtype, value)| OwnedTlv::Azure { subtype, value }),
        any::<u64>().prop_map(|psc_connection_id| OwnedTlv::Gcp { psc_connection_id }),
        (0x40u8..=0xDF, bytes()).prop_map(|(kind, value)| OwnedTlv::Unknown { kind, value }),
    ]
}

proptest! {
    #[test]
    fn v2_round_trip(
        addresses in arb_addresses(),
        dgram in any::<bool>(),
        tlvs in proptest::collection::vec(arb_tlv(), 0..6),
        crc in any::<bool>(),
    ) {
        let transport = match (addresses, dgram) {
            (Addresses::Unspec, _) => Transport::Unspec,
            (_, true) => Transport::Dgram,
            _ => Transport::Stream,
        };
        let tlvs = if addresses == Addresses::Unspec { vec![] } else { tlvs };
        let h = OwnedHeader { version: Version::V2, command: Command::Proxy, transport, addresses, tlvs };
        let mut b = encode_v2(&h, crc).unwrap();
        let len = b.len();
        b.extend_from_slice(b"trailing");
        let cfg = ParseConfig { max_v2_len: u16::MAX };
        match parse(&b, &cfg) {
            Ok(Parsed::Complete(p)) => {
                prop_assert_eq!(p.header_len(), len);
                prop_assert_eq!(p.to_owned(), h);
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn v1_round_trip(addresses in arb_addresses()) {
        prop_assume!(!matches!(addresses, Addresses::Unix { .. }));
        let h = OwnedHeader {
            version: Version::V1,
            command: Command::Proxy,
            transport: if addresses == Addresses::Unspec { Transport::Unspec } else { Transport::Stream },
            addresses,
            tlvs: vec![],
        };
        let b = encode_v1(&h).unwrap();
        prop_assert!(b.len() <= V1_MAX_LEN);
        match parse(&b, &ParseConfig::default()) {
            Ok(Parsed::Complete(p)) => prop_assert_eq!(p.to_owned(), h),
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse(&bytes, &cfg());
        let _ = parse_v1(&bytes);
        let _ = parse_v2(&bytes, &cfg());
        let mut v1 = b"PROXY ".to_vec();
        v1.extend_from_slice(&bytes);
        let _ = parse(&v1, &cfg());
        let mut v2b = SIGNATURE.to_vec();
        v2b.extend_from_slice(&bytes);
        if let Ok(Parsed::Complete(h)) = parse(&v2b, &cfg()) {
            for t in h.tlvs() {
                if let Tlv::Ssl(s) = t {
                    let _ = s.sub_tlvs().count();
                }
            }
            let _ = h.to_owned();
        }
    }
}
