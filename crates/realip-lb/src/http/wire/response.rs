//! A backend's response head on the fast path: how it is framed, or why it
//! cannot be relayed, and the head the client gets. Pure.

use crate::http::answer::{connection_tokens, content_length, is_hop_by_hop};

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    None,
    Length(u64),
    Chunked,
    Close,
}

/// What a backend's response head says, once it is known to say it one
/// way only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResponseHead {
    pub(crate) code: u16,
    pub(crate) framing: Framing,
    /// The Content-Length to pass on: the body's, or for HEAD and 304 the
    /// one a GET would get.
    pub(crate) length: Option<u64>,
    /// Chunked, for a HEAD answer saying what a GET would get.
    pub(crate) chunked: bool,
    /// The backend connection cannot carry another request.
    pub(crate) up_close: bool,
}

/// Decide how a response is framed (RFC 9112 §6.3), or why it cannot be
/// relayed: never pass on framing a client could read two ways.
pub(crate) fn frame_response(
    resp: &httparse::Response<'_, '_>,
    is_head: bool,
) -> Result<ResponseHead, &'static str> {
    let code = resp.code.unwrap_or(0);
    if !(100..=599).contains(&code) {
        return Err("status code out of range");
    }
    let backend_11 = resp.version == Some(1);
    let bodiless = is_head || (100..200).contains(&code) || code == 204 || code == 304;
    let mut up_close = !backend_11;
    let mut length = None;
    let mut te: Option<bool> = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let l = content_length(h.value).ok_or("malformed Content-Length")?;
            if length.is_some_and(|m| m != l) {
                return Err("conflicting Content-Length");
            }
            length = Some(l);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only `chunked`, once: anything else (`gzip, chunked`,
            // `chunked, chunked`, `xchunked`) is a coding this proxy cannot
            // pass on faithfully, as nginx refuses it.
            if te.is_some() || !h.value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err("unsupported Transfer-Encoding");
            }
            te = Some(true);
        } else if h.name.eq_ignore_ascii_case("connection") {
            match connection_tokens(h.value) {
                Some((close, keep)) => up_close |= close || (!backend_11 && !keep),
                None => up_close = true,
            }
        }
    }
    let chunked = te.is_some();
    if chunked && !backend_11 {
        // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message is faulty.
        return Err("Transfer-Encoding from an HTTP/1.0 backend");
    }
    if chunked && length.is_some() {
        // RFC 9112 §6.3 (3): chunked wins and Content-Length goes; the
        // backend that sent both is not trusted with another request.
        length = None;
        up_close = true;
    }
    let framing = if bodiless {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    // 1xx and 204 carry no Content-Length (RFC 9110 §8.6).
    if (100..200).contains(&code) || code == 204 {
        length = None;
    }
    Ok(ResponseHead {
        code,
        framing,
        length,
        chunked,
        up_close,
    })
}

/// The head the client gets for a backend's response `resp` framed as
/// `head`: the client's version, hop-by-hop headers out, and exactly one
/// framing header, written here rather than copied.
pub(crate) fn write_response_head(
    out: &mut Vec<u8>,
    resp: &httparse::Response<'_, '_>,
    head: &ResponseHead,
    http10: bool,
    is_head: bool,
    client_keep: bool,
) {
    let reason = resp.reason.unwrap_or("");
    out.clear();
    out.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    push_decimal(out, u64::from(head.code));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in resp.headers.iter() {
        if is_hop_by_hop(h.name) || h.name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    // A HEAD answer says what a GET would get.
    if let Some(n) = head.length {
        out.extend_from_slice(b"content-length: ");
        push_decimal(out, n);
        out.extend_from_slice(b"\r\n");
    } else if head.framing == Framing::Chunked || (is_head && head.chunked) {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if !(100..200).contains(&head.code) {
        if !client_keep {
            out.extend_from_slice(b"connection: close\r\n");
        } else if http10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal, without the allocation `to_string` makes on every
/// response.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        for n in [0u64, 7, 10, 204, 65_536, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
