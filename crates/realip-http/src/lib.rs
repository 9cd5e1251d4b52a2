//! realip-http: realip-core on `http` types.
//!
//! [`HttpHeaders`] lets a resolver read an `http::HeaderMap`; the forwarding
//! helpers are what a proxy does to a request on its way through: append to
//! X-Forwarded-For, or restart the chain when the peer is not trusted.
//!
//! What it must not do: I/O, or keep a forwarding header from a peer that is
//! not trusted (CWE-348: a client could then name any address it likes).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use http::header::{HeaderMap, HeaderName, HeaderValue};
use realip_core::Headers;

/// An `http::HeaderMap` as realip evidence.
#[derive(Debug, Clone, Copy)]
pub struct HttpHeaders<'a>(pub &'a HeaderMap);

impl Headers for HttpHeaders<'_> {
    fn values<'s>(&'s self, name: &str) -> impl DoubleEndedIterator<Item = &'s [u8]> {
        // An invalid name can match nothing; HeaderMap lookups by &str are
        // case-insensitive.
        self.0.get_all(name).into_iter().map(HeaderValue::as_bytes)
    }
}

/// The forwarding headers a proxy rewrites. Used by the lb and by tests.
pub const FORWARDING_HEADERS: [&str; 7] = [
    "x-forwarded-for",
    "x-real-ip",
    "forwarded",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-proto",
    "x-original-forwarded-for",
];

/// Remove every forwarding header: what a proxy does when the peer is not
/// trusted, so the chain restarts at the peer.
pub fn strip_forwarding(headers: &mut HeaderMap) {
    for name in FORWARDING_HEADERS {
        headers.remove(name);
    }
}

/// Append `peer` to X-Forwarded-For, merging earlier instances into one
/// (nginx's `$proxy_add_x_forwarded_for`).
pub fn append_xff(headers: &mut HeaderMap, peer: std::net::IpAddr) {
    let name = HeaderName::from_static("x-forwarded-for");
    let mut joined = Vec::new();
    for v in headers.get_all(&name) {
        if !joined.is_empty() {
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    if !joined.is_empty() {
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(peer.to_string().as_bytes());
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use realip_core::{Request, Resolver, Strategy, TrustSet};

    #[test]
    fn header_map_is_evidence() {
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_static("2.2.2.2, 3.3.3.3"),
        );
        h.append("X-Forwarded-For", HeaderValue::from_static("4.4.4.4"));
        let r = Resolver::new(
            TrustSet::parse(["10.0.0.0/8", "4.4.4.0/24"]).unwrap(),
            vec!["rightmost-trusted-range".parse::<Strategy>().unwrap()],
        );
        let hh = HttpHeaders(&h);
        let req = Request::new("10.0.0.5:1".parse().unwrap(), &hh);
        assert_eq!(r.resolve(&req).unwrap().ip.to_string(), "3.3.3.3");
        assert_eq!(hh.values("not a header name").count(), 0);
    }

    #[test]
    fn append_and_strip() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
        h.append("x-forwarded-for", HeaderValue::from_static("2.2.2.2"));
        append_xff(&mut h, "10.0.0.1".parse().unwrap());
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.0.0.1");
        h.insert("x-real-ip", HeaderValue::from_static("6.6.6.6"));
        strip_forwarding(&mut h);
        assert!(h.is_empty());
    }
}
