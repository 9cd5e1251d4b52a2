//! Entry points for the fuzz targets (`fuzz/fuzz_targets/h1_request.rs`,
//! `h1_response.rs`): the fast path's request and response handling on
//! bytes alone, with the properties the wire must keep checked here, so a
//! target is a one-line call. Not an API: hidden from the docs, and it
//! panics on purpose when a property breaks.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use crate::forward::{Forwarding, HeaderSet, RequestIds, Underscores, XffMode};
use crate::http::site::Conn;
use crate::http::upstream::{PoolLimits, RawPool, Upstream};
use crate::http::wire::response::{frame_response, write_response_head, Framing};
use crate::http::wire::{parse, Parsed};
use crate::http::{HttpLimits, Shared, Site};
use crate::pool::Pool;
use crate::route::{Route, Routes};
use crate::{Backend, Method};

/// The headers a client that is not trusted never gets past the proxy,
/// under any spelling: what the fast path writes must hold none of them
/// but the proxy's own. Written out again on purpose rather than taken
/// from realip-http's list: an oracle that shares the list would not
/// notice a name dropped from it.
const FORWARDING: [&str; 10] = [
    "x-forwarded-for",
    "x-real-ip",
    "forwarded",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-original-uri",
    "x-scheme",
    "x-request-id",
    "x-original-forwarded-for",
];

fn conn() -> &'static Conn {
    static CONN: OnceLock<Conn> = OnceLock::new();
    CONN.get_or_init(|| {
        let backend = Backend {
            addr: "127.0.0.1:9".parse().expect("an address"),
            weight: 1,
        };
        let pool = Arc::new(Pool::new(Method::RoundRobin, vec![backend]));
        let routes = vec![
            Route::new(Some("public.test"), "/", pool.clone()).expect("a route"),
            Route::new(None, "/", pool).expect("a route"),
        ];
        let trusted = realip_core::TrustSet::parse(["10.0.0.0/8"]).expect("a trust set");
        let site = Site {
            routes: Routes::new(routes),
            forwarding: Forwarding {
                headers: HeaderSet::ingress(),
                xff: XffMode::Append,
                underscores: Underscores::Drop,
                resolver: realip_core::Resolver::new(
                    trusted,
                    vec![realip_core::Strategy::RightmostTrustedRange(
                        "X-Forwarded-For".into(),
                    )],
                ),
            },
            tls: None,
            accept_proxy: realip_net::ProxyMode::Off,
            upgrades: vec!["websocket".into()],
            limits: HttpLimits::default(),
        };
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(site));
        // The receiver lives in the static; the sender may go.
        drop(tx);
        let shared = Arc::new(Shared {
            site: rx,
            conns: Arc::default(),
            stats: Arc::default(),
            upstream: Upstream::new(PoolLimits::default()),
            raw: RawPool::new(PoolLimits::default()),
            ids: RequestIds::default(),
        });
        Conn {
            shared,
            peer: realip_core::PeerAddr(SocketAddr::from(([203, 0, 113, 7], 40000))),
            client: SocketAddr::from(([203, 0, 113, 7], 40000)),
            client_source: realip_core::Source::Peer,
            local: realip_core::LocalAddr(SocketAddr::from(([127, 0, 0, 1], 8080))),
            scheme: "http",
        }
    })
}

/// A client's bytes through the fast path's parser. When it takes the
/// request, the head it would send must be one well-formed request of
/// exactly its length, with one Host, at most one `content-length: 0`,
/// no name with an underscore, and no forwarding header but one of each
/// that the proxy set (the client, 203.0.113.7, is not trusted).
pub fn request(buf: &[u8]) {
    let mut up = Vec::new();
    let Parsed::Simple(taken) = parse(buf, conn(), &mut up) else {
        return;
    };
    assert!(taken.len <= buf.len());
    if taken.routed.is_none() {
        return;
    }
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&up) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, up.len(), "one head, nothing after"),
        other => panic!("the upstream head does not parse: {other:?}"),
    }
    let count = |name: &str| {
        req.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .count()
    };
    assert_eq!(count("host"), 1);
    assert!(count("content-length") <= 1);
    assert_eq!(count("transfer-encoding"), 0);
    for h in req.headers.iter() {
        assert!(!h.name.contains('_'), "{} went on", h.name);
        let norm = h.name.to_ascii_lowercase();
        if FORWARDING.contains(&norm.as_str()) {
            assert_eq!(count(&norm), 1, "{norm} twice");
        }
        // The headers that name the client carry the peer, never an
        // address the client wrote (Host and the target may hold anything,
        // and X-Forwarded-Host and X-Original-Uri repeat them).
        if matches!(norm.as_str(), "x-forwarded-for" | "x-real-ip") {
            assert_eq!(h.value, b"203.0.113.7", "{norm}");
        }
        if norm == "forwarded" {
            assert!(h.value.starts_with(b"for=203.0.113.7;"), "forwarded");
        }
    }
}

/// A backend's bytes through the fast path's response handling. When it
/// relays the head, what the client gets must be one well-formed head of
/// exactly its length with at most one framing header, agreeing with the
/// framing the proxy follows, and no bare LF.
pub fn response(buf: &[u8], is_head: bool, http10: bool) {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut resp = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = resp.parse(buf) else {
        return;
    };
    let Ok(head) = frame_response(&resp, is_head) else {
        return;
    };
    let mut out = Vec::new();
    let keep = head.framing != Framing::Close;
    write_response_head(&mut out, &resp, &head, http10, is_head, keep);
    for (i, &b) in out.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && out[i - 1] == b'\r', "bare LF at {i}");
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 110];
    let mut seen = httparse::Response::new(&mut headers);
    match seen.parse(&out) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, out.len()),
        other => panic!("the client's head does not parse: {other:?}"),
    }
    let lengths: Vec<&[u8]> = seen
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| h.value)
        .collect();
    let chunked = seen
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
        .count();
    assert!(lengths.len() + chunked <= 1, "two framings");
    match head.framing {
        Framing::Length(n) => assert_eq!(lengths, [n.to_string().as_bytes()]),
        Framing::Chunked => assert_eq!(chunked, 1),
        Framing::Close => assert!(lengths.is_empty() && chunked == 0),
        Framing::None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attacks_on_the_fast_path_keep_its_properties() {
        for req in [
            &b"GET / HTTP/1.1\r\nHost: public.test\r\nX_Forwarded_For: 1.2.3.4\r\nX-Forwarded_For: 1.2.3.4\r\nx_real_ip: 1.2.3.4\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: public.test\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: public.test\r\nX-FORWARDED-FOR: 1.2.3.4\r\nForwarded: for=1.2.3.4\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
        ] {
            request(req);
        }
        // Refused by the fast path (the hyper path answers them 400).
        for req in [
            &b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
        ] {
            let mut up = Vec::new();
            assert!(
                matches!(parse(req, conn(), &mut up), Parsed::NotSimple),
                "{}",
                String::from_utf8_lossy(req)
            );
        }
    }

    fn framed(resp: &[u8]) -> Result<(Framing, Option<u64>), &'static str> {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut r = httparse::Response::new(&mut headers);
        assert!(r.parse(resp).unwrap().is_complete());
        response(resp, false, false);
        frame_response(&r, false).map(|h| (h.framing, h.length))
    }

    #[test]
    fn response_framing_is_one_reading_or_refused() {
        // RFC 9112 §6.3 (3): chunked wins, the length goes.
        assert_eq!(
            framed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Ok((Framing::Chunked, None))
        );
        assert_eq!(
            framed(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n"),
            Ok((Framing::Length(2), Some(2)))
        );
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0x2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 099 Low\r\n\r\n",
            b"HTTP/1.1 600 High\r\n\r\n",
        ] {
            assert!(framed(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
