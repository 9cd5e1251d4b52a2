//! PROXY v1: never panics; a complete header re-encodes to the same bytes
//! (v1 has one spelling for each header) and parses back equal.
#![no_main]
use libfuzzer_sys::fuzz_target;
use realip_proxy::{encode_v1, parse_v1, Parsed};

fuzz_target!(|data: &[u8]| {
    if let Ok(Parsed::Complete(h)) = parse_v1(data) {
        assert!(h.header_len() <= realip_proxy::V1_MAX_LEN);
        let owned = h.to_owned();
        let again = encode_v1(&owned).expect("a parsed v1 header encodes");
        match parse_v1(&again) {
            Ok(Parsed::Complete(h2)) => assert_eq!(h2.to_owned(), owned),
            other => panic!("re-encoded header did not parse: {other:?}"),
        }
    }
});
