//! X-Forwarded-For under every list strategy: never panics, and the fast
//! path always agrees with the explained one.
#![no_main]
use std::net::SocketAddr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use realip_core::{Request, Resolver, Source, Strategy, TrustSet};

/// The resolvers are built once: building them per input was most of the
/// time of a run.
fn resolvers() -> &'static [(&'static str, Resolver)] {
    static R: OnceLock<Vec<(&str, Resolver)>> = OnceLock::new();
    R.get_or_init(|| {
        let trusted = TrustSet::parse(["10.0.0.0/8", "2001:db8::/32", "127.0.0.1"]).unwrap();
        [
            "rightmost-trusted-range",
            "rightmost-trusted-count:2",
            "rightmost-non-private",
            "leftmost-non-private",
            "single-header:X-Forwarded-For",
        ]
        .into_iter()
        .map(|s| {
            (
                s,
                Resolver::new(trusted.clone(), Strategy::parse_chain(s).unwrap()),
            )
        })
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the strategy and the peer (trusted or not): one
    // resolution per input instead of all ten runs ten times as many inputs.
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    let rs = resolvers();
    let (s, r) = &rs[usize::from(pick) % rs.len()];
    let peer: SocketAddr = if pick & 0x80 == 0 {
        "10.0.0.1:1".parse().unwrap()
    } else {
        "9.9.9.9:2".parse().unwrap()
    };
    let headers: Vec<(&str, &[u8])> = data
        .split(|&b| b == b'\n')
        .map(|v| ("X-Forwarded-For", v))
        .collect();
    let req = Request::new(peer, &headers);
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
});
