//! PROXY v2: never panics, never reads past the declared length; a complete
//! header's TLVs iterate, and its owned form re-encodes and parses back equal.
#![no_main]
use libfuzzer_sys::fuzz_target;
use realip_proxy::{encode_v2, parse_v2, ParseConfig, Parsed, Tlv};

fuzz_target!(|data: &[u8]| {
    let cfg = ParseConfig::default();
    match parse_v2(data, &cfg) {
        Ok(Parsed::Complete(h)) => {
            assert!(h.header_len() <= data.len());
            assert!(h.header_len() <= 16 + usize::from(cfg.max_v2_len));
            for t in h.tlvs() {
                if let Tlv::Ssl(s) = t {
                    for sub in s.sub_tlvs() {
                        let _ = sub.value.len();
                    }
                }
                let _ = t.azure_link_id();
                let _ = t.aws_vpce_id();
            }
            let owned = h.to_owned();
            for crc in [false, true] {
                let bytes = encode_v2(&owned, crc).expect("a parsed header encodes");
                let big = ParseConfig {
                    max_v2_len: u16::MAX,
                };
                match parse_v2(&bytes, &big) {
                    Ok(Parsed::Complete(h2)) => assert_eq!(h2.to_owned(), owned),
                    other => panic!("re-encoded header did not parse: {other:?}"),
                }
            }
        }
        Ok(Parsed::Incomplete { needed }) => assert!(needed > 0),
        Err(_) => {}
    }
});
