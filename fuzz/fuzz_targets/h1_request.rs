//! The lb's HTTP/1 fast path on a client's bytes: never panics, and a head
//! it takes goes on as one well-formed request with one Host, at most one
//! `content-length: 0`, no underscore name and no forwarding header the
//! untrusted client wrote (realip_lb::fuzzing::request checks each).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| realip_lb::fuzzing::request(data));
