//! The attack suite's own view of the wire: strict HTTP/1.1 parsers (RFC
//! 9112, no leniency at all: a bare LF, a bare CR, obs-fold, whitespace
//! before a colon, a control byte in a value, both Content-Length and
//! Transfer-Encoding are all errors), an HTTP/2 frame writer with a tiny
//! HPACK encoder (literals without indexing, no Huffman, so anything can be
//! sent) and a frame reader that decodes only what it needs (`:status`).
//!
//! Deliberately none of the proxy's code (nor httparse, which it uses): the
//! judge must not share the defendant's bugs.

/// A parsed head: the start line and the header fields as received (name,
/// value with OWS trimmed).
#[derive(Debug, Clone, Default)]
pub struct Head {
    pub start: String,
    pub fields: Vec<(String, Vec<u8>)>,
}

impl Head {
    pub fn all(&self, name: &str) -> Vec<&[u8]> {
        self.fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    pub fn one(&self, name: &str) -> Option<String> {
        let v = self.all(name);
        (v.len() == 1).then(|| String::from_utf8_lossy(v[0]).into_owned())
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Where the next CRLF-terminated line ends: Ok(Some((line, next))) or
/// an error for a bare LF or bare CR.
fn line(buf: &[u8], from: usize) -> Result<Option<(&[u8], usize)>, String> {
    let mut i = from;
    while i < buf.len() {
        match buf[i] {
            b'\n' => return Err(format!("bare LF at byte {i}")),
            b'\r' => {
                if i + 1 >= buf.len() {
                    return Ok(None);
                }
                if buf[i + 1] != b'\n' {
                    return Err(format!("bare CR at byte {i}"));
                }
                return Ok(Some((&buf[from..i], i + 2)));
            }
            _ => i += 1,
        }
    }
    Ok(None)
}

/// One header field line, strictly.
fn field(l: &[u8]) -> Result<(String, Vec<u8>), String> {
    if l.first().is_some_and(|&b| b == b' ' || b == b'\t') {
        return Err("obs-fold (a line starting with whitespace)".into());
    }
    let colon = l
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| format!("a field line without a colon: {:?}", lossy(l)))?;
    let name = &l[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(format!("invalid field name {:?}", lossy(name)));
    }
    let mut v = &l[colon + 1..];
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    if let Some(b) = v.iter().find(|&&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(format!(
            "control byte {b:#04x} in the value of {:?}",
            lossy(name)
        ));
    }
    Ok((String::from_utf8_lossy(name).into_owned(), v.to_vec()))
}

pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A head from `buf`: Ok(None) while incomplete.
pub fn head(buf: &[u8]) -> Result<Option<(Head, usize)>, String> {
    let Some((start, mut at)) = line(buf, 0)? else {
        return Ok(None);
    };
    let mut h = Head {
        start: lossy(start),
        fields: Vec::new(),
    };
    loop {
        let Some((l, next)) = line(buf, at)? else {
            return Ok(None);
        };
        at = next;
        if l.is_empty() {
            return Ok(Some((h, at)));
        }
        h.fields.push(field(l)?);
    }
}

/// The request line, strictly: method SP origin/absolute/authority/* SP
/// HTTP/1.x.
pub fn request_line(s: &str) -> Result<(String, String, String), String> {
    let parts: Vec<&str> = s.split(' ').collect();
    let [m, t, v] = parts[..] else {
        return Err(format!("request line {s:?} is not three words"));
    };
    if m.is_empty() || !m.bytes().all(is_tchar) {
        return Err(format!("bad method {m:?}"));
    }
    if t.is_empty() || !t.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(format!("bad target {t:?}"));
    }
    if v != "HTTP/1.1" && v != "HTTP/1.0" {
        return Err(format!("bad version {v:?}"));
    }
    Ok((m.into(), t.into(), v.into()))
}

/// The status line, strictly: HTTP/1.x SP 3DIGIT SP reason.
pub fn status_line(s: &str) -> Result<u16, String> {
    let rest = s
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| s.strip_prefix("HTTP/1.0 "))
        .ok_or_else(|| format!("status line {s:?}"))?;
    let code = rest.get(..3).unwrap_or("");
    let after = &rest[code.len()..];
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) || !after.starts_with(' ') {
        return Err(format!("status line {s:?}"));
    }
    let n: u16 = code.parse().unwrap_or(0);
    if !(100..600).contains(&n) {
        return Err(format!("status {n}"));
    }
    Ok(n)
}

/// A chunked body at `buf[from..]`: Ok(Some((data, end))) when complete.
pub fn chunked(buf: &[u8], from: usize) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut at = from;
    let mut data = Vec::new();
    loop {
        let Some((l, next)) = line(buf, at)? else {
            return Ok(None);
        };
        let hex_end = l
            .iter()
            .position(|b| !b.is_ascii_hexdigit())
            .unwrap_or(l.len());
        if hex_end == 0 || hex_end > 15 {
            return Err(format!("chunk size line {:?}", lossy(l)));
        }
        let ext = &l[hex_end..];
        if !ext.is_empty()
            && (ext[0] != b';' || ext.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f))
        {
            return Err(format!("chunk size line {:?}", lossy(l)));
        }
        let size = usize::from_str_radix(std::str::from_utf8(&l[..hex_end]).unwrap(), 16)
            .map_err(|e| e.to_string())?;
        at = next;
        if size == 0 {
            // Trailer section.
            loop {
                let Some((l, next)) = line(buf, at)? else {
                    return Ok(None);
                };
                at = next;
                if l.is_empty() {
                    return Ok(Some((data, at)));
                }
                field(l)?;
            }
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        data.extend_from_slice(&buf[at..at + size]);
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        at += size + 2;
    }
}

/// How long a body is, from the head (RFC 9112 §6.3), strictly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Framing {
    Empty,
    Length(usize),
    Chunked,
    Close,
}

fn content_length(h: &Head) -> Result<Option<usize>, String> {
    let cls = h.all("content-length");
    let mut n = None;
    for v in cls {
        if v.is_empty() || v.len() > 15 || !v.iter().all(u8::is_ascii_digit) {
            return Err(format!("Content-Length {:?}", lossy(v)));
        }
        let x: usize = lossy(v).parse().unwrap();
        if n.is_some_and(|m| m != x) {
            return Err("two different Content-Lengths".into());
        }
        n = Some(x);
    }
    Ok(n)
}

/// A request's body framing; both CL and TE, or a TE other than exactly
/// `chunked`, is an error (what a strict origin must refuse).
pub fn request_framing(h: &Head) -> Result<Framing, String> {
    let te = h.all("transfer-encoding");
    let cl = content_length(h)?;
    if !te.is_empty() {
        if cl.is_some() {
            return Err("both Content-Length and Transfer-Encoding".into());
        }
        if te.len() != 1 || !te[0].eq_ignore_ascii_case(b"chunked") {
            return Err(format!(
                "Transfer-Encoding {:?}",
                te.iter().map(|v| lossy(v)).collect::<Vec<_>>()
            ));
        }
        return Ok(Framing::Chunked);
    }
    Ok(cl.map_or(Framing::Empty, Framing::Length))
}

/// A response's body framing for a request that was (not) HEAD.
pub fn response_framing(h: &Head, status: u16, head_req: bool) -> Result<Framing, String> {
    let te = h.all("transfer-encoding");
    let cl = content_length(h)?;
    if !te.is_empty() && cl.is_some() {
        return Err("both Content-Length and Transfer-Encoding".into());
    }
    if head_req || status < 200 || status == 204 || status == 304 {
        return Ok(Framing::Empty);
    }
    if !te.is_empty() {
        if te.len() != 1 {
            return Err("Transfer-Encoding twice".into());
        }
        let last = lossy(te[0]);
        let last = last
            .rsplit(',')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        return Ok(if last == "chunked" {
            if !te[0].eq_ignore_ascii_case(b"chunked") {
                return Err(format!("Transfer-Encoding {:?}", lossy(te[0])));
            }
            Framing::Chunked
        } else {
            Framing::Close
        });
    }
    Ok(cl.map_or(Framing::Close, Framing::Length))
}

/// One response as the client read it.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub head: Head,
    pub body: Vec<u8>,
    /// The body ended as its framing said (false: cut off by close/silence).
    pub complete: bool,
}

/// Every response in what a client received (`closed`: the server closed
/// after these bytes). Returns them and the first framing error, if any.
pub fn responses(buf: &[u8], head_req: bool, closed: bool) -> (Vec<Resp>, Option<String>) {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let (h, body_at) = match head(&buf[at..]) {
            Ok(Some(x)) => x,
            Ok(None) => {
                return (
                    out,
                    Some(format!(
                        "incomplete head: {:?}",
                        lossy(&buf[at..buf.len().min(at + 60)])
                    )),
                )
            }
            Err(e) => return (out, Some(e)),
        };
        let status = match status_line(&h.start) {
            Ok(s) => s,
            Err(e) => return (out, Some(e)),
        };
        let body_at = at + body_at;
        let framing = match response_framing(&h, status, head_req) {
            Ok(f) => f,
            Err(e) => return (out, Some(e)),
        };
        let (body, end, complete) = match framing {
            Framing::Empty => (Vec::new(), body_at, true),
            Framing::Length(n) if buf.len() >= body_at + n => {
                (buf[body_at..body_at + n].to_vec(), body_at + n, true)
            }
            Framing::Length(_) => (buf[body_at..].to_vec(), buf.len(), false),
            Framing::Close => (buf[body_at..].to_vec(), buf.len(), closed),
            Framing::Chunked => match chunked(buf, body_at) {
                Ok(Some((d, end))) => (d, end, true),
                Ok(None) => (buf[body_at..].to_vec(), buf.len(), false),
                Err(e) => {
                    out.push(Resp {
                        status,
                        head: h,
                        body: Vec::new(),
                        complete: false,
                    });
                    return (out, Some(format!("response body: {e}")));
                }
            },
        };
        out.push(Resp {
            status,
            head: h,
            body,
            complete,
        });
        at = end;
    }
    (out, None)
}

// ---------------------------------------------------------------- HTTP/2

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const GOAWAY: u8 = 7;
pub const CONTINUATION: u8 = 9;
pub const END_STREAM: u8 = 1;
pub const END_HEADERS: u8 = 4;

pub fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let n = payload.len();
    let mut f = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, ty, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn hpack_int(out: &mut Vec<u8>, first: u8, prefix_bits: u32, mut n: usize) {
    let max = (1usize << prefix_bits) - 1;
    if n < max {
        out.push(first | n as u8);
        return;
    }
    out.push(first | max as u8);
    n -= max;
    while n >= 128 {
        out.push((n % 128 + 128) as u8);
        n /= 128;
    }
    out.push(n as u8);
}

/// A header block of literals without indexing, new names, no Huffman:
/// any byte can be sent, uppercase, CR, LF, NUL included.
pub fn hpack(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in fields {
        out.push(0x00);
        hpack_int(&mut out, 0, 7, n.len());
        out.extend_from_slice(n);
        hpack_int(&mut out, 0, 7, v.len());
        out.extend_from_slice(v);
    }
    out
}

/// What came back on an h2 connection.
#[derive(Debug, Default, Clone)]
pub struct H2Seen {
    /// Per stream: final (>= 200) statuses seen (0: not decodable).
    pub statuses: std::collections::BTreeMap<u32, Vec<u16>>,
    pub data: std::collections::BTreeMap<u32, Vec<u8>>,
    pub rst: std::collections::BTreeMap<u32, u32>,
    pub ended: std::collections::BTreeSet<u32>,
    pub goaway: Option<u32>,
    pub error: Option<String>,
}

/// Decode up to `want` digits from a Huffman string (only the codes of
/// '0'..'9', RFC 7541 Appendix B).
fn huffman_digits(b: &[u8]) -> Option<String> {
    let bits: Vec<u8> = b
        .iter()
        .flat_map(|x| (0..8).rev().map(move |i| (x >> i) & 1))
        .collect();
    let take = |at: usize, n: usize| -> Option<u32> {
        (at + n <= bits.len()).then(|| {
            bits[at..at + n]
                .iter()
                .fold(0u32, |a, &x| a << 1 | u32::from(x))
        })
    };
    let (mut at, mut s) = (0, String::new());
    while s.len() < 3 {
        let v5 = take(at, 5)?;
        if v5 <= 2 {
            s.push((b'0' + v5 as u8) as char);
            at += 5;
            continue;
        }
        let v6 = take(at, 6)?;
        if (0x19..=0x1f).contains(&v6) {
            s.push((b'3' + (v6 - 0x19) as u8) as char);
            at += 6;
            continue;
        }
        return None;
    }
    Some(s)
}

fn read_int(b: &[u8], at: &mut usize, prefix_bits: u32) -> Option<usize> {
    let max = (1usize << prefix_bits) - 1;
    let mut n = (*b.get(*at)? as usize) & max;
    *at += 1;
    if n < max {
        return Some(n);
    }
    let mut shift = 0;
    loop {
        let x = *b.get(*at)? as usize;
        *at += 1;
        n += (x & 0x7f) << shift;
        shift += 7;
        if x & 0x80 == 0 {
            return Some(n);
        }
    }
}

/// The `:status` of a response header block: its first field, either a
/// static-table entry (8..14) or a literal with the static `:status` name.
pub fn status_of_block(b: &[u8]) -> u16 {
    const STATIC: [u16; 7] = [200, 204, 206, 304, 400, 404, 500];
    let mut at = 0;
    // Skip dynamic table size updates.
    while b.get(at).is_some_and(|x| x & 0xe0 == 0x20) {
        if read_int(b, &mut at, 5).is_none() {
            return 0;
        }
    }
    let Some(&first) = b.get(at) else { return 0 };
    if first & 0x80 != 0 {
        let Some(i) = read_int(b, &mut at, 7) else {
            return 0;
        };
        return if (8..=14).contains(&i) {
            STATIC[i - 8]
        } else {
            0
        };
    }
    let prefix = if first & 0x40 != 0 { 6 } else { 4 };
    let Some(i) = read_int(b, &mut at, prefix) else {
        return 0;
    };
    if !(8..=14).contains(&i) {
        return 0;
    }
    let Some(&lb) = b.get(at) else { return 0 };
    let huff = lb & 0x80 != 0;
    let Some(n) = read_int(b, &mut at, 7) else {
        return 0;
    };
    let Some(v) = b.get(at..at + n) else { return 0 };
    let s = if huff {
        huffman_digits(v)
    } else {
        Some(lossy(v))
    };
    s.and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Read the frames a server sent.
pub fn h2_read(buf: &[u8]) -> H2Seen {
    let mut seen = H2Seen::default();
    let mut at = 0;
    let mut block: Option<(u32, Vec<u8>, bool)> = None;
    while at + 9 <= buf.len() {
        let len = (buf[at] as usize) << 16 | (buf[at + 1] as usize) << 8 | buf[at + 2] as usize;
        let (ty, flags) = (buf[at + 3], buf[at + 4]);
        let sid =
            u32::from_be_bytes([buf[at + 5], buf[at + 6], buf[at + 7], buf[at + 8]]) & 0x7fff_ffff;
        if at + 9 + len > buf.len() {
            break;
        }
        let mut p = &buf[at + 9..at + 9 + len];
        at += 9 + len;
        match ty {
            DATA => {
                if flags & 0x8 != 0 && !p.is_empty() {
                    let pad = p[0] as usize;
                    p = &p[1..p.len().saturating_sub(pad).max(1)];
                }
                seen.data.entry(sid).or_default().extend_from_slice(p);
                if flags & END_STREAM != 0 {
                    seen.ended.insert(sid);
                }
            }
            HEADERS => {
                if flags & 0x8 != 0 && !p.is_empty() {
                    let pad = p[0] as usize;
                    p = &p[1..p.len().saturating_sub(pad).max(1)];
                }
                if flags & 0x20 != 0 && p.len() >= 5 {
                    p = &p[5..];
                }
                block = Some((sid, p.to_vec(), flags & END_STREAM != 0));
                if flags & END_HEADERS == 0 {
                    continue;
                }
            }
            CONTINUATION => {
                if let Some((_, b, _)) = block.as_mut() {
                    b.extend_from_slice(p);
                }
                if flags & END_HEADERS == 0 {
                    continue;
                }
            }
            RST_STREAM if p.len() >= 4 => {
                seen.rst
                    .insert(sid, u32::from_be_bytes([p[0], p[1], p[2], p[3]]));
                continue;
            }
            GOAWAY if p.len() >= 8 => {
                seen.goaway = Some(u32::from_be_bytes([p[4], p[5], p[6], p[7]]));
                continue;
            }
            _ => continue,
        }
        if let Some((sid, b, end)) = block.take() {
            let st = status_of_block(&b);
            if st == 0 || st >= 200 {
                seen.statuses.entry(sid).or_default().push(st);
            }
            if end {
                seen.ended.insert(sid);
            }
        }
    }
    if at != buf.len() {
        seen.error = Some(format!("{} trailing bytes", buf.len() - at));
    }
    seen
}

/// A request on stream 1: preface, empty SETTINGS, HEADERS (END_STREAM
/// when there is no body), then the body as one DATA frame.
pub fn h2_request(fields: &[(&[u8], &[u8])], body: Option<&[u8]>) -> Vec<u8> {
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    let es = if body.is_none() { END_STREAM } else { 0 };
    out.extend(frame(HEADERS, END_HEADERS | es, 1, &hpack(fields)));
    if let Some(b) = body {
        out.extend(frame(DATA, END_STREAM, 1, b));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_parsers() {
        assert!(head(b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n").is_err());
        assert!(head(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n").is_err());
        assert!(head(b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n").is_err());
        let (h, n) = head(b"GET / HTTP/1.1\r\nHost:  a \r\n\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!((h.one("host").as_deref(), n), (Some("a"), 29));
        let (d, end) = chunked(b"2;x=y\r\nab\r\n0\r\nT: v\r\n\r\n", 0)
            .unwrap()
            .unwrap();
        assert_eq!((d.as_slice(), end), (&b"ab"[..], 22));
        assert!(chunked(b"2\nab\r\n0\r\n\r\n", 0).is_err());
        // "502" in Huffman: 011011 00000 00010 + padding.
        assert_eq!(
            huffman_digits(&[0b0110_1100, 0b0000_0010, 0b1111_1111]).as_deref(),
            Some("502")
        );
        assert_eq!(status_of_block(&[0x88]), 200);
        assert_eq!(status_of_block(&[0x08, 0x03, b'5', b'0', b'2']), 502);
    }
}
