//! TOA options: never panics; a decoded option re-encodes to its own bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use realip_core::toa;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = toa::decode(data) {
        let enc = toa::encode(t.kind, t.addr).expect("decoded option encodes");
        assert_eq!(&data[..enc.len()], &enc[..]);
    }
    let _ = toa::find_in_options(data);
});
