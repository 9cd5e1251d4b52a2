//! Address text: never panics; what parses prints back to text that parses
//! to the same address; CIDR and trust-list parsing never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use realip_core::{Addr, Cidr, TrustSet};

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = Addr::parse_bytes(data) {
        let again = Addr::parse(&a.to_string()).expect("display output parses");
        assert_eq!(again, a);
        assert!(!a.ip.is_unspecified());
        assert_ne!(a.port, Some(0));
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Cidr::parse(s);
        let _ = TrustSet::parse(s.split(','));
        let _ = s.parse::<realip_core::Strategy>();
    }
});
