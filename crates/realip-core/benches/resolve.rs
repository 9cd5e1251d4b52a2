//! In-process micro-benchmarks of the hot paths (criterion).
//!
//! Targets on the project's 2-core machine: a 5-entry X-Forwarded-For
//! resolved against 3 trusted CIDRs in at most 150 ns; a PROXY v2 IPv4
//! header with 2 TLVs parsed in at most 50 ns.
// A test crate: its items are shared between its modules, not an API.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use realip_core::proxy;
use realip_core::{Request, Resolver, Strategy, TrustSet};

fn xff(c: &mut Criterion) {
    let resolver = Resolver::new(
        TrustSet::parse(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]).unwrap(),
        vec!["rightmost-trusted-range".parse::<Strategy>().unwrap()],
    );
    // The client, then four trusted proxies: the walk visits all five.
    let headers = vec![(
        "X-Forwarded-For",
        "203.0.113.7, 10.1.2.3, 172.16.5.4, 192.168.1.1, 10.0.0.2",
    )];
    let peer = "10.0.0.1:40000".parse().unwrap();
    let req = Request::new(peer, &headers);
    assert_eq!(
        resolver.resolve(&req).unwrap().ip.to_string(),
        "203.0.113.7"
    );
    c.bench_function("resolve/xff-5-entries-3-cidrs", |b| {
        b.iter(|| black_box(&resolver).resolve(black_box(&req)))
    });
    c.bench_function("explain/xff-5-entries-3-cidrs", |b| {
        b.iter(|| black_box(&resolver).explain(black_box(&req)))
    });
}

fn proxy_v2(c: &mut Criterion) {
    let header = proxy::OwnedHeader {
        version: proxy::Version::V2,
        command: proxy::Command::Proxy,
        transport: proxy::Transport::Stream,
        addresses: proxy::Addresses::Ipv4 {
            src: "203.0.113.7:56324".parse().unwrap(),
            dst: "10.0.0.1:443".parse().unwrap(),
        },
        tlvs: vec![
            proxy::OwnedTlv::Alpn(b"h2".to_vec()),
            proxy::OwnedTlv::Authority("example.com".into()),
        ],
    };
    let bytes = proxy::encode_v2(&header, false).unwrap();
    let cfg = proxy::ParseConfig::default();
    assert!(matches!(
        proxy::parse_v2(&bytes, &cfg),
        Ok(proxy::Parsed::Complete(_))
    ));
    c.bench_function("proxy/v2-ipv4-2-tlvs", |b| {
        b.iter(|| {
            proxy::parse_v2(black_box(&bytes), &cfg)
                .map(|p| matches!(p, proxy::Parsed::Complete(_)))
        })
    });
    let v1 = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    c.bench_function("proxy/v1-tcp4", |b| {
        b.iter(|| proxy::parse_v1(black_box(v1)).map(|p| matches!(p, proxy::Parsed::Complete(_))))
    });
}

criterion_group!(benches, xff, proxy_v2);
criterion_main!(benches);
