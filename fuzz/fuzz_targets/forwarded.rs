//! RFC 7239 Forwarded: the parser never panics, keeps at most
//! MAX_FORWARDED_ELEMENTS, and resolution agrees with its explanation.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use realip_core::headers::{parse_forwarded, MAX_FORWARDED_ELEMENTS};
use realip_core::{Request, Resolver, Strategy, TrustSet};

fuzz_target!(|data: &[u8]| {
    let els = parse_forwarded(data);
    assert!(els.len() <= MAX_FORWARDED_ELEMENTS);
    // Instances split at newlines, as several header lines would arrive.
    let headers: Vec<(&str, &[u8])> = data
        .split(|&b| b == b'\n')
        .map(|v| ("Forwarded", v))
        .collect();
    // Built once: building it per input was most of the time of a run.
    static R: OnceLock<Resolver> = OnceLock::new();
    let r = R.get_or_init(|| {
        Resolver::new(
            TrustSet::parse(["private", "loopback"]).unwrap(),
            vec![Strategy::RightmostTrustedRange("Forwarded".into())],
        )
    });
    let req = Request::new("10.0.0.1:1".parse().unwrap(), &headers);
    let fast = r.resolve(&req);
    let full = r.explain(&req);
    assert_eq!(fast, full.client);
    // The JSON view escapes every header value again: over half the time
    // of a run on long inputs, and its failure modes do not need them.
    if data.len() <= 512 {
        let _ = serde_json::to_string(&realip_core::json::JsonResolution::from(&full)).unwrap();
    }
});
