//! The pure parsers behind the listeners, for the fuzz targets in `fuzz/`
//! only: not an API. A file of its own so lib.rs depends on no listener.

use std::net::SocketAddr;

use realip_core::ClientAddr;

use crate::{h1, line};

/// The reply to one line of the TCP/UDP line protocol.
pub fn line_reply(
    line: &str,
    peer: SocketAddr,
    client: Option<&ClientAddr>,
    hostname: &str,
) -> String {
    line::respond(line, peer, client, hostname)
}

/// What the HTTP/1 fast path makes of a read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum H1Head {
    /// More bytes are needed.
    Partial,
    /// Handed to hyper.
    NotSimple,
    /// Answered by the fast path.
    Simple {
        /// Bytes of the head.
        len: usize,
        /// Whether the connection stays open after the answer.
        keep_alive: bool,
        /// GET or HEAD.
        method: http::Method,
        /// How many header fields it has.
        headers: usize,
    },
}

/// The fast path's parse of `buf` with at most `max_headers` headers.
pub fn h1_head(buf: &[u8], max_headers: usize) -> H1Head {
    match h1::parse(buf, max_headers) {
        h1::Parse::Partial => H1Head::Partial,
        h1::Parse::NotSimple => H1Head::NotSimple,
        h1::Parse::Simple(h) => H1Head::Simple {
            len: h.len,
            keep_alive: h.keep_alive,
            method: h.request.method().clone(),
            headers: h.request.headers().len(),
        },
    }
}
