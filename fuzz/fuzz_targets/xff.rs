//! X-Forwarded-For under every list strategy: never panics, and the fast
//! path always agrees with the explained one.
#![no_main]
use libfuzzer_sys::fuzz_target;
use realip_core::{Request, Resolver, Source, Strategy, TrustSet};

fuzz_target!(|data: &[u8]| {
    let headers: Vec<(&str, &[u8])> = data
        .split(|&b| b == b'\n')
        .map(|v| ("X-Forwarded-For", v))
        .collect();
    let trusted = TrustSet::parse(["10.0.0.0/8", "2001:db8::/32", "127.0.0.1"]).unwrap();
    for s in [
        "rightmost-trusted-range",
        "rightmost-trusted-count:2",
        "rightmost-non-private",
        "leftmost-non-private",
        "single-header:X-Forwarded-For",
    ] {
        let r = Resolver::new(trusted.clone(), Strategy::parse_chain(s).unwrap());
        for peer in ["10.0.0.1:1", "9.9.9.9:2"] {
            let req = Request::new(peer.parse().unwrap(), &headers);
            let fast = r.resolve(&req);
            let full = r.explain(&req);
            assert_eq!(fast, full.client, "{s}");
            if let Some(c) = &fast {
                let step = full.decisive().unwrap();
                let i = step.answer.expect("an answer names its hop");
                assert_eq!(step.hops[i].source, c.source);
                if let Source::Header { .. } = c.source {
                    assert!(i + 1 < step.hops.len());
                }
            }
        }
    }
});
