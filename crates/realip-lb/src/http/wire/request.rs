//! A client's request head on the fast path: parsed, checked, routed, its
//! forwarding headers planned and its upstream head written.

use realip_core::Headers;

use crate::forward::{Plan, RequestFacts};
use crate::http::answer::{connection_tokens, is_hop_by_hop, is_idempotent, valid_host};
use crate::http::limits::MAX_HEADERS;
use crate::http::site::Conn;

/// Raw headers from httparse as realip evidence.
pub(crate) struct RawHeaders<'h, 'b>(&'h [httparse::Header<'b>]);

impl Headers for RawHeaders<'_, '_> {
    fn values<'s>(&'s self, name: &str) -> impl DoubleEndedIterator<Item = &'s [u8]> {
        self.0
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// A request the fast path takes, its upstream head already written.
pub(crate) struct Taken {
    /// Bytes of the client's head.
    pub(crate) len: usize,
    /// Where it goes, when a route matched.
    pub(crate) routed: Option<Routed>,
    pub(crate) http10: bool,
    pub(crate) keep_alive: bool,
    pub(crate) is_head: bool,
    pub(crate) idempotent: bool,
}

/// A request's route: the site it was routed under (read once the head is
/// whole), the pool and the forwarding plan.
pub(crate) struct Routed {
    pub(crate) site: std::sync::Arc<crate::http::site::Site>,
    pub(crate) pool: std::sync::Arc<crate::pool::Pool>,
    pub(crate) plan: Plan,
}

pub(crate) enum Parsed {
    Partial,
    NotSimple,
    Simple(Taken),
}

/// forwarding headers and write its upstream head into `up`.
pub(crate) fn parse(buf: &[u8], conn: &Conn, up: &mut Vec<u8>) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::NotSimple,
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Parsed::NotSimple;
    };
    if method == "CONNECT" || !target.starts_with('/') {
        return Parsed::NotSimple;
    }
    let http10 = version == 0;
    let mut host = None;
    let mut keep_alive = !http10;
    // `Content-Length: 0` repeated is one length (RFC 9110 §8.6), and one
    // header goes on.
    let mut length_zero = false;
    for h in req.headers.iter() {
        let n = h.name;
        if n.eq_ignore_ascii_case("host") {
            // Two, or one that is no host[:port] (a list, a path): 400
            // from the hyper path (RFC 9112 §3.2).
            if host.is_some() || !valid_host(h.value) {
                return Parsed::NotSimple;
            }
            host = std::str::from_utf8(h.value).ok();
        } else if n.eq_ignore_ascii_case("content-length") {
            if h.value != b"0" {
                return Parsed::NotSimple;
            }
            length_zero = true;
        } else if n.eq_ignore_ascii_case("transfer-encoding")
            || n.eq_ignore_ascii_case("expect")
            || n.eq_ignore_ascii_case("upgrade")
        {
            return Parsed::NotSimple;
        } else if n.eq_ignore_ascii_case("connection") {
            match connection_tokens(h.value) {
                None => return Parsed::NotSimple,
                Some((true, _)) => keep_alive = false,
                Some((false, true)) if http10 => keep_alive = true,
                Some(_) => {}
            }
        }
    }
    let Some(host) = host else {
        return Parsed::NotSimple;
    };
    let path = target.split('?').next().unwrap_or(target);
    let taken = Taken {
        len,
        routed: None,
        http10,
        keep_alive,
        is_head: method == "HEAD",
        idempotent: is_idempotent(method),
    };
    let site = conn.shared.site.borrow().clone();
    let mut taken = taken;
    let Some(route) = site.routes.find(Some(host), path) else {
        return Parsed::Simple(taken);
    };
    let facts = RequestFacts {
        peer: conn.client,
        local: conn.local.0,
        scheme: conn.scheme,
        host: Some(host),
        target,
    };
    let plan = site
        .forwarding
        .plan(&RawHeaders(req.headers), &facts, &conn.shared.ids);
    up.clear();
    up.extend_from_slice(method.as_bytes());
    up.push(b' ');
    up.extend_from_slice(target.as_bytes());
    // The backend answers in the client's version: an HTTP/1.0 client
    // never gets a chunked body.
    up.extend_from_slice(if http10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    for h in req.headers.iter() {
        if is_hop_by_hop(h.name)
            || plan.drops(h.name.as_bytes())
            || h.name.eq_ignore_ascii_case("content-length")
        {
            continue;
        }
        up.extend_from_slice(h.name.as_bytes());
        up.extend_from_slice(b": ");
        up.extend_from_slice(h.value);
        up.extend_from_slice(b"\r\n");
    }
    if length_zero {
        up.extend_from_slice(b"content-length: 0\r\n");
    }
    for (n, v) in &plan.set {
        up.extend_from_slice(n.as_str().as_bytes());
        up.extend_from_slice(b": ");
        up.extend_from_slice(v.as_bytes());
        up.extend_from_slice(b"\r\n");
    }
    if http10 {
        up.extend_from_slice(b"connection: keep-alive\r\n");
    }
    up.extend_from_slice(b"\r\n");
    let pool = route.target.clone();
    taken.routed = Some(Routed { site, pool, plan });
    Parsed::Simple(taken)
}
