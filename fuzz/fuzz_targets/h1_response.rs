//! The lb's HTTP/1 fast path on a backend's bytes: never panics, and a head
//! it relays reaches the client as one well-formed head with at most one
//! framing header, the one the proxy follows, and no bare LF
//! (realip_lb::fuzzing::response checks each). The first byte picks the
//! request it answers: HEAD or not, HTTP/1.0 or 1.1.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&mode, rest)) = data.split_first() {
        realip_lb::fuzzing::response(rest, mode & 1 != 0, mode & 2 != 0);
    }
});
