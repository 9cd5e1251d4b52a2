//! What both paths share about HTTP itself: the proxy's own answers, the
//! hop-by-hop headers, idempotent methods, and the checks that decide
//! whether a Host or a Content-Length can be read one way only. Pure.

use http::header::{self, HeaderMap};
use http::StatusCode;

/// The answers the proxy gives itself, the same on both paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// No route for the host and path: 404.
    NoRoute,
    /// No backend of the route's pool is up: 503.
    NoBackend,
    /// The backends tried could not be reached or broke off: 502.
    Unreachable,
    /// No response head within the response timeout: 504.
    Timeout,
    /// A 101 to a request that asked for no upgrade: 502.
    UnaskedSwitch,
    /// Two Host headers (RFC 9112 §3.2): 400.
    TwoHosts,
    /// An HTTP/1.1 request without Host, or h2 without `:authority`
    /// (RFC 9112 §3.2, RFC 9113 §8.3.1): 400.
    NoHost,
    /// A Host that is no `host[:port]`, a comma list among them: 400.
    BadHost,
    /// A request target that is no URI, or CONNECT (a tunnel this proxy
    /// does not open): 400.
    BadTarget,
    /// Content-Length and Transfer-Encoding together, or a coding list
    /// other than one `chunked` (RFC 9112 §6.3, §7): 400.
    TwoFramings,
    /// The client's body broke its own framing (a malformed chunk): 400.
    BadBody,
    /// The backend's answer could be read two ways, or was malformed: 502.
    BadResponse,
}

impl Answer {
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Answer::NoRoute => StatusCode::NOT_FOUND,
            Answer::NoBackend => StatusCode::SERVICE_UNAVAILABLE,
            Answer::Unreachable | Answer::UnaskedSwitch | Answer::BadResponse => {
                StatusCode::BAD_GATEWAY
            }
            Answer::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Answer::TwoHosts
            | Answer::NoHost
            | Answer::BadHost
            | Answer::BadTarget
            | Answer::TwoFramings
            | Answer::BadBody => StatusCode::BAD_REQUEST,
        }
    }

    /// Whether the answer says no backend answered (502, 503, 504): what
    /// `realip_lb_upstream_failures_total` counts.
    pub(crate) fn is_upstream_failure(self) -> bool {
        matches!(self.status().as_u16(), 502..=504)
    }

    /// Whether the client connection must close after this answer: after
    /// a request whose framing or target cannot be trusted, the bytes that
    /// follow it are no request (RFC 9112 §6.3, §9.6).
    pub(crate) fn closes(self) -> bool {
        self.status() == StatusCode::BAD_REQUEST
    }

    pub(crate) fn text(self) -> &'static str {
        match self {
            Answer::NoRoute => "no route for this host and path\n",
            Answer::NoBackend => "no backend is up\n",
            Answer::Unreachable => "the backend could not be reached or broke off\n",
            Answer::Timeout => "the backend did not answer in time\n",
            Answer::UnaskedSwitch => "the backend switched protocols unasked\n",
            Answer::TwoHosts => "more than one Host header\n",
            Answer::NoHost => "no Host header\n",
            Answer::BadHost => "the Host header is no host[:port]\n",
            Answer::BadTarget => "bad request target\n",
            Answer::TwoFramings => "the body's framing could be read two ways\n",
            Answer::BadBody => "malformed request body\n",
            Answer::BadResponse => "the backend's answer could not be passed on safely\n",
        }
    }
}

/// Whether a Host value (or an authority) is `uri-host[":"port]` (RFC 9110
/// §7.2) with a host a DNS name or IP literal could be. A comma is refused
/// although RFC 3986's reg-name allows it: `a, b` is how two Host lines
/// look once combined (RFC 9110 §5.3), and two are a 400 (RFC 9112 §3.2);
/// so are userinfo, paths and anything a backend could split differently.
pub(crate) fn valid_host(v: &[u8]) -> bool {
    let port = match v.first() {
        Some(b'[') => {
            let Some(end) = v.iter().position(|&b| b == b']') else {
                return false;
            };
            let ip_ok = std::str::from_utf8(&v[1..end])
                .is_ok_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
            if !ip_ok {
                return false;
            }
            match &v[end + 1..] {
                [] => None,
                [b':', port @ ..] => Some(port),
                _ => return false,
            }
        }
        _ => {
            let (host, port) = match v.iter().position(|&b| b == b':') {
                Some(i) => (&v[..i], Some(&v[i + 1..])),
                None => (v, None),
            };
            let host_ok = !host.is_empty()
                && host
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
            if !host_ok {
                return false;
            }
            port
        }
    };
    port.is_none_or(|p| p.len() <= 5 && p.iter().all(u8::is_ascii_digit))
}

/// Headers that belong to one connection, never forwarded (RFC 9110
/// §7.6.1), plus Transfer-Encoding, which the framing on each side decides.
pub(crate) const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
];

/// Whether a header is one of [`HOP_BY_HOP`].
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|n| n.eq_ignore_ascii_case(name))
}

pub(crate) fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Names listed in Connection are hop-by-hop too.
    let listed: Vec<header::HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| header::HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in listed {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
}

/// Whether a request may be sent again after it may have reached a backend
/// (RFC 9110 §9.2.2).
pub(crate) fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
    )
}

/// Whether a Connection value holds only `close` and `keep-alive` (any
/// other token names a header to drop: left to the hyper path).
pub(crate) fn connection_tokens(v: &[u8]) -> Option<(bool, bool)> {
    let (mut close, mut keep) = (false, false);
    for t in v.split(|&b| b == b',') {
        let t = t.trim_ascii();
        if t.eq_ignore_ascii_case(b"close") {
            close = true;
        } else if t.eq_ignore_ascii_case(b"keep-alive") {
            keep = true;
        } else if !t.is_empty() {
            return None;
        }
    }
    Some((close, keep))
}

/// A Content-Length value: one decimal number, or a list of the same one
/// (RFC 9110 §8.6). Signs, spaces inside, hex and overflow are refused:
/// two readers could disagree on them.
pub(crate) fn content_length(v: &[u8]) -> Option<u64> {
    let mut n: Option<u64> = None;
    for part in v.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let this = part.iter().fold(0u64, |a, &d| a * 10 + u64::from(d - b'0'));
        if n.is_some_and(|m| m != this) {
            return None;
        }
        n = Some(this);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_tokens_and_hop_by_hop() {
        assert_eq!(connection_tokens(b"close"), Some((true, false)));
        assert_eq!(connection_tokens(b"Keep-Alive, close"), Some((true, true)));
        assert_eq!(connection_tokens(b"x-secret"), None);
        assert!(is_hop_by_hop("Keep-Alive") && !is_hop_by_hop("x-forwarded-for"));
        assert!(is_idempotent("PUT") && !is_idempotent("POST"));
    }
}
