//! whoami's HTTP/1 fast-path head parser: never panics; a head it answers
//! lies inside the buffer, parses the same from exactly its own bytes and
//! with more bytes after it (pipelining), keeps the header limit, and is
//! GET or HEAD; a partial head stays partial on any shorter prefix.
#![no_main]
use http::Method;
use libfuzzer_sys::fuzz_target;
use realip_whoami::fuzz::{h1_head, H1Head};

fuzz_target!(|data: &[u8]| {
    // The first byte is the header limit (1-100, as configured).
    let Some((&m, buf)) = data.split_first() else {
        return;
    };
    let max = usize::from(m % 100) + 1;
    let got = h1_head(buf, max);
    match &got {
        H1Head::Simple {
            len,
            method,
            headers,
            ..
        } => {
            assert!(*len > 0 && *len <= buf.len());
            assert!(*headers <= max);
            assert!(*method == Method::GET || *method == Method::HEAD);
            assert_eq!(h1_head(&buf[..*len], max), got, "own bytes");
            let mut more = buf[..*len].to_vec();
            more.extend_from_slice(b"GET / HTTP/1.1\r\n");
            assert_eq!(h1_head(&more, max), got, "pipelined");
            // A bigger header limit answers the same head the same way.
            assert_eq!(h1_head(buf, 100), got, "limit 100");
        }
        H1Head::Partial => {
            for cut in [0, buf.len() / 2, buf.len().saturating_sub(1)] {
                assert_eq!(h1_head(&buf[..cut], max), H1Head::Partial, "prefix {cut}");
            }
        }
        H1Head::NotSimple => {}
    }
});
