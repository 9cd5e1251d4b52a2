//! realip-http: realip-core on `http` types.
//!
//! [`HttpHeaders`] lets a resolver read an `http::HeaderMap`; [`forward`] is
//! what a proxy does to a request's forwarding headers on its way through
//! (nginx-ingress's set, the chain kept from trusted peers and restarted at
//! anyone else), planned once for a `HeaderMap` or for raw parsed headers.
//!
//! What it must not do: I/O, or keep a forwarding header from a peer that is
//! not trusted (CWE-348: a client could then name any address it likes).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod forward;

use http::header::{HeaderMap, HeaderValue};
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
}
