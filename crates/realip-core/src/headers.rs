//! Header parsers: X-Forwarded-For lists, single-IP headers such as
//! X-Real-IP, and RFC 7239 `Forwarded`.
//!
//! Header values are bytes, as they arrive; nothing here allocates unless an
//! explanation or a quoted-string with escapes asks for it. Header size itself
//! is bounded by whoever read the request (hyper, the lb); these parsers add
//! bounds on what they keep (see [`MAX_FORWARDED_ELEMENTS`]).

use std::borrow::Cow;

use crate::addr::{Addr, AddrError};

/// Access to a request's header values by name.
///
/// All instances of a header, in the order they arrived. The order matters:
/// proxies append, so the last instance is the nearest hop.
pub trait Headers {
    /// Every value of header `name` (ASCII case-insensitive), in order.
    fn values<'s>(&'s self, name: &str) -> impl DoubleEndedIterator<Item = &'s [u8]>;
}

impl<K: AsRef<str>, V: AsRef<[u8]>> Headers for [(K, V)] {
    fn values<'s>(&'s self, name: &str) -> impl DoubleEndedIterator<Item = &'s [u8]> {
        self.iter()
            .filter(move |(k, _)| k.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<[u8]>> Headers for Vec<(K, V)> {
    fn values<'s>(&'s self, name: &str) -> impl DoubleEndedIterator<Item = &'s [u8]> {
        self.as_slice().values(name)
    }
}

/// No headers at all (a raw TCP connection).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHeaders;

impl Headers for NoHeaders {
    fn values<'s>(&'s self, _name: &str) -> impl DoubleEndedIterator<Item = &'s [u8]> {
        std::iter::empty()
    }
}

/// Separators between X-Forwarded-For entries. nginx splits on both `,` and
/// space, so `1.2.3.4 5.6.7.8` is two entries there and here.
fn is_xff_sep(b: &u8) -> bool {
    matches!(b, b',' | b' ' | b'\t')
}

/// How many entries one X-Forwarded-For value holds: the same count as
/// [`xff_entries`], in one pass over the bytes.
pub fn count_xff_entries(value: &[u8]) -> usize {
    let mut n = 0;
    let mut in_token = false;
    for b in value {
        let sep = is_xff_sep(b);
        n += usize::from(!sep && !in_token);
        in_token = !sep;
    }
    n
}

/// X-Forwarded-For entries from every instance, far client first.
pub fn xff_entries<'s>(values: impl Iterator<Item = &'s [u8]>) -> impl Iterator<Item = &'s [u8]> {
    values.flat_map(|v| v.split(is_xff_sep).filter(|t| !t.is_empty()))
}

/// X-Forwarded-For entries from every instance, nearest hop first: the last
/// instance is read first, each from its right end (nginx's order).
pub fn xff_entries_rev<'s>(
    values: impl DoubleEndedIterator<Item = &'s [u8]>,
) -> impl Iterator<Item = &'s [u8]> {
    values
        .rev()
        .flat_map(|v| v.rsplit(is_xff_sep).filter(|t| !t.is_empty()))
}

/// Why a single-IP header such as X-Real-IP gave no address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SingleHeaderError {
    /// The header is absent.
    #[error("header is absent")]
    Missing,
    /// The header appears more than once. Two instances mean two parties
    /// wrote it, and one of them is not the proxy we trust (CWE-348).
    #[error("header appears {0} times; a single-IP header must appear once")]
    Repeated(usize),
    /// The value is not one address.
    #[error("value {value:?} is not an address: {error}")]
    Invalid {
        /// The value, lossily decoded and cut to 96 bytes for display.
        value: String,
        /// What was wrong.
        error: AddrError,
    },
}

/// The address in a header that carries exactly one (X-Real-IP,
/// True-Client-IP, CF-Connecting-IP, ...).
pub fn single_ip<'s>(
    mut values: impl Iterator<Item = &'s [u8]>,
) -> Result<Addr, SingleHeaderError> {
    let first = values.next().ok_or(SingleHeaderError::Missing)?;
    let more = values.count();
    if more > 0 {
        return Err(SingleHeaderError::Repeated(more + 1));
    }
    Addr::parse_bytes(first).map_err(|error| SingleHeaderError::Invalid {
        value: display_bytes(first),
        error,
    })
}

/// Bytes from the network made printable and short, for messages.
pub fn display_bytes(b: &[u8]) -> String {
    let cut = &b[..b.len().min(96)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if b.len() > cut.len() {
        s.push('…');
    }
    s
}

/// Most `Forwarded` elements kept from one header value. Each proxy adds one,
/// so real chains are a handful long. Past this the *nearest* elements are
/// kept (they are the ones trusted proxies wrote) and a broken element stands
/// in for the far ones, so a walk stops there: dropping entries can then only
/// make us trust less, never let a far, forged entry move nearer.
pub const MAX_FORWARDED_ELEMENTS: usize = 64;

/// A node in a `Forwarded` parameter (`for=`, `by=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node<'a> {
    /// An IP address, maybe with a port.
    Addr(Addr),
    /// `unknown`: the proxy did not know.
    Unknown,
    /// An obfuscated identifier such as `_hidden`.
    Obfuscated(Cow<'a, str>),
    /// Present but not a valid node.
    Invalid(Cow<'a, str>, AddrError),
}

/// Why an element of a `Forwarded` header could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ForwardedError {
    /// A quoted string never closed.
    #[error("unclosed quoted string")]
    UnclosedQuote,
    /// A parameter without `=`, or with an empty name.
    #[error("parameter is not name=value")]
    BadPair,
    /// The same parameter twice in one element (RFC 7239 section 4).
    #[error("parameter appears twice in one element")]
    DuplicateParam,
    /// Text after a value that is not `;` or `,`.
    #[error("unexpected text after a value")]
    TrailingGarbage,
    /// More than [`MAX_FORWARDED_ELEMENTS`] elements; the far ones were dropped.
    #[error("more than {MAX_FORWARDED_ELEMENTS} elements; the farthest were not read")]
    TooManyElements,
}

/// One element of a `Forwarded` header: what one proxy said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ForwardedElement<'a> {
    /// `for=`: who the proxy received the request from.
    pub for_: Option<Node<'a>>,
    /// `by=`: the proxy's own interface.
    pub by: Option<Node<'a>>,
    /// `proto=`.
    pub proto: Option<Cow<'a, str>>,
    /// `host=`.
    pub host: Option<Cow<'a, str>>,
    /// Set when the element was malformed; its parameters may be partial and
    /// a walk must stop here.
    pub error: Option<ForwardedError>,
    /// The element's text, for explanations.
    pub raw: &'a str,
}

/// Parse every element of one `Forwarded` header value, in order.
///
/// Lenient where leniency cannot be abused: a broken element (an unclosed
/// quote, say) is reported as broken and parsing resumes at the next comma,
/// so a client cannot sabotage the elements its proxies append after it.
pub fn parse_forwarded(value: &[u8]) -> Vec<ForwardedElement<'_>> {
    let mut out = Vec::new();
    // Non-UTF-8 bytes only make sense inside quoted strings of extensions;
    // replace the whole value's broken part by cutting at the first bad byte
    // (an element there becomes malformed, never guessed).
    let text = match std::str::from_utf8(value) {
        Ok(t) => t,
        Err(e) => {
            let good = std::str::from_utf8(&value[..e.valid_up_to()]).unwrap_or("");
            let mut els = parse_forwarded_str(good);
            els.push(ForwardedElement {
                error: Some(ForwardedError::TrailingGarbage),
                raw: "",
                ..Default::default()
            });
            if els.len() > MAX_FORWARDED_ELEMENTS {
                // Keep the bound: drop the farthest, and mark the far end
                // as cut (found by the `forwarded` fuzz target).
                els.remove(0);
                els[0] = ForwardedElement {
                    error: Some(ForwardedError::TooManyElements),
                    ..Default::default()
                };
            }
            return els;
        }
    };
    out.extend(parse_forwarded_str(text));
    out
}

fn parse_forwarded_str(text: &str) -> Vec<ForwardedElement<'_>> {
    let b = text.as_bytes();
    let mut out = std::collections::VecDeque::new();
    let mut dropped = false;
    let mut pos = 0;
    while pos <= b.len() {
        if out.len() == MAX_FORWARDED_ELEMENTS {
            out.pop_front();
            dropped = true;
        }
        let start = pos;
        let (el, next) = parse_element(text, pos);
        let end = next.min(b.len());
        // An element of only whitespace (`a, , b`) is skipped like an empty
        // list member (RFC 7230 #rule).
        let raw = text[start..end].trim_matches(|c| c == ' ' || c == '\t' || c == ',');
        if !(raw.is_empty() && el.error.is_none() && el.for_.is_none()) {
            out.push_back(ForwardedElement { raw, ..el });
        }
        if next >= b.len() {
            break;
        }
        pos = next;
    }
    if dropped {
        out.pop_front();
        out.push_front(ForwardedElement {
            error: Some(ForwardedError::TooManyElements),
            ..Default::default()
        });
    }
    out.into()
}

/// Parse one element starting at `pos`; returns it and the position just
/// after its terminating comma (or the end).
fn parse_element(text: &str, mut pos: usize) -> (ForwardedElement<'_>, usize) {
    let b = text.as_bytes();
    let mut el = ForwardedElement::default();
    loop {
        pos = skip_ows(b, pos);
        if pos >= b.len() {
            return (el, b.len());
        }
        if b[pos] == b',' {
            return (el, pos + 1);
        }
        // name
        let name_start = pos;
        while pos < b.len() && is_tchar(b[pos]) {
            pos += 1;
        }
        let name = &text[name_start..pos];
        if name.is_empty() || pos >= b.len() || b[pos] != b'=' {
            return fail_keep(el, ForwardedError::BadPair, pos, b);
        }
        pos += 1;
        // value
        let value: Cow<'_, str> = if pos < b.len() && b[pos] == b'"' {
            match quoted(text, pos) {
                Some((v, next)) => {
                    pos = next;
                    v
                }
                None => return fail_keep(el, ForwardedError::UnclosedQuote, pos, b),
            }
        } else {
            let vs = pos;
            while pos < b.len() && is_tchar(b[pos]) {
                pos += 1;
            }
            Cow::Borrowed(&text[vs..pos])
        };
        let slot_dup = if name.eq_ignore_ascii_case("for") {
            set_once(&mut el.for_, || parse_node(value))
        } else if name.eq_ignore_ascii_case("by") {
            set_once(&mut el.by, || parse_node(value))
        } else if name.eq_ignore_ascii_case("proto") {
            set_once(&mut el.proto, || value)
        } else if name.eq_ignore_ascii_case("host") {
            set_once(&mut el.host, || value)
        } else {
            // Extensions are allowed and ignored.
            false
        };
        if slot_dup {
            return fail_keep(el, ForwardedError::DuplicateParam, pos, b);
        }
        pos = skip_ows(b, pos);
        if pos >= b.len() {
            return (el, b.len());
        }
        match b[pos] {
            b';' => pos += 1,
            b',' => return (el, pos + 1),
            _ => return fail_keep(el, ForwardedError::TrailingGarbage, pos, b),
        }
    }
}

/// Mark `el` broken and resume after the next comma from `from`: one broken
/// element poisons only itself.
fn fail_keep<'a>(
    mut el: ForwardedElement<'a>,
    err: ForwardedError,
    from: usize,
    b: &[u8],
) -> (ForwardedElement<'a>, usize) {
    el.error = Some(err);
    let from = from.min(b.len());
    let next = b[from..]
        .iter()
        .position(|&c| c == b',')
        .map_or(b.len(), |i| from + i + 1);
    (el, next)
}

/// Store a parameter; returns true when it was already set.
fn set_once<T>(slot: &mut Option<T>, make: impl FnOnce() -> T) -> bool {
    if slot.is_some() {
        return true;
    }
    *slot = Some(make());
    false
}

/// A quoted-string starting at `pos` (which holds `"`). Returns the
/// unescaped content and the position after the closing quote, or `None`
/// when the quote never closes.
fn quoted(text: &str, pos: usize) -> Option<(Cow<'_, str>, usize)> {
    let b = text.as_bytes();
    let start = pos + 1;
    let mut i = start;
    let mut escaped = false;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                escaped = true;
                i += 2;
                continue;
            }
            b'"' => {
                let inner = &text[start..i];
                let v = if escaped {
                    let mut s = String::with_capacity(inner.len());
                    let mut chars = inner.chars();
                    while let Some(c) = chars.next() {
                        if c == '\\' {
                            if let Some(n) = chars.next() {
                                s.push(n);
                            }
                        } else {
                            s.push(c);
                        }
                    }
                    Cow::Owned(s)
                } else {
                    Cow::Borrowed(inner)
                };
                return Some((v, i + 1));
            }
            _ => i += 1,
        }
    }
    None
}

/// A node: `unknown`, `_obfuscated`, or an address with an optional real or
/// obfuscated port (`"[2001:db8::1]:4711"`, `192.0.2.1:_p1`).
pub fn parse_node(value: Cow<'_, str>) -> Node<'_> {
    let v = value.as_ref();
    if v.eq_ignore_ascii_case("unknown") {
        return Node::Unknown;
    }
    if v.starts_with('_') {
        let ok = v.len() > 1
            && v.len() <= 64
            && v.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
        return if ok {
            Node::Obfuscated(value)
        } else {
            Node::Invalid(value, AddrError::NotAnIp)
        };
    }
    // An obfuscated port says nothing we can use; keep the address.
    let addr_text = match v.rfind(":_") {
        Some(i) if v[..i].ends_with(']') || !v[..i].contains(':') => &v[..i],
        _ => v,
    };
    match Addr::parse(addr_text) {
        Ok(a) => Node::Addr(a),
        Err(e) => Node::Invalid(value, e),
    }
}

fn skip_ows(b: &[u8], mut pos: usize) -> usize {
    while pos < b.len() && (b[pos] == b' ' || b[pos] == b'\t') {
        pos += 1;
    }
    pos
}

/// RFC 7230 token characters, plus `[`, `]` and `:` which proxies emit
/// unquoted in IPv6 nodes although the RFC asks for quotes.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
                | b'['
                | b']'
                | b':'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(values: &[&str]) -> Vec<String> {
        let v: Vec<&[u8]> = values.iter().map(|s| s.as_bytes()).collect();
        xff_entries_rev(v.into_iter())
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .collect()
    }

    #[test]
    fn xff_split() {
        assert_eq!(rev(&["1.2.3.4, 10.0.0.1"]), ["10.0.0.1", "1.2.3.4"]);
        assert_eq!(rev(&["1.2.3.4,10.0.0.1"]), ["10.0.0.1", "1.2.3.4"]);
        assert_eq!(
            rev(&["2.2.2.2:3384, 3.3.3.3", "4.4.4.4"]),
            ["4.4.4.4", "3.3.3.3", "2.2.2.2:3384"]
        );
        assert_eq!(rev(&[" , ,1.1.1.1 ,, "]), ["1.1.1.1"]);
        assert!(rev(&[""]).is_empty());
        let fwd: Vec<&[u8]> =
            xff_entries([b"a, b".as_slice(), b"c".as_slice()].into_iter()).collect();
        assert_eq!(fwd, [b"a".as_slice(), b"b", b"c"]);
    }

    #[test]
    fn entry_count_matches_the_splitter() {
        for v in [
            "",
            " ",
            "a",
            "a,b",
            " a , b ,, c ",
            ",,,",
            "a b\tc",
            "1.1.1.1, 2.2.2.2",
        ] {
            assert_eq!(
                count_xff_entries(v.as_bytes()),
                xff_entries([v.as_bytes()].into_iter()).count(),
                "{v:?}"
            );
        }
    }

    #[test]
    fn headers_lookup_is_case_insensitive_and_ordered() {
        let h = vec![
            ("X-Forwarded-For", "1"),
            ("x-forwarded-for", "2"),
            ("Other", "3"),
        ];
        let got: Vec<&[u8]> = h.values("X-FORWARDED-FOR").collect();
        assert_eq!(got, [b"1".as_slice(), b"2"]);
        assert_eq!(NoHeaders.values("x").count(), 0);
    }

    #[test]
    fn single_ip_rules() {
        let one = [b"1.2.3.4".as_slice()];
        assert_eq!(single_ip(one.into_iter()).unwrap().to_string(), "1.2.3.4");
        let two = [b"1.2.3.4".as_slice(), b"5.6.7.8"];
        assert_eq!(
            single_ip(two.into_iter()),
            Err(SingleHeaderError::Repeated(2))
        );
        assert_eq!(
            single_ip(std::iter::empty()),
            Err(SingleHeaderError::Missing)
        );
        let list = [b"1.2.3.4, 5.6.7.8".as_slice()];
        assert!(matches!(
            single_ip(list.into_iter()),
            Err(SingleHeaderError::Invalid { .. })
        ));
    }

    fn fors(v: &str) -> Vec<Option<Node<'_>>> {
        parse_forwarded(v.as_bytes())
            .into_iter()
            .map(|e| e.for_)
            .collect()
    }

    #[test]
    fn forwarded_rfc_examples() {
        let els = parse_forwarded(
            b"for=192.0.2.60;proto=http;by=203.0.113.43, for=\"[2001:db8:cafe::17]:4711\"",
        );
        assert_eq!(els.len(), 2);
        assert_eq!(
            els[0].for_,
            Some(Node::Addr(Addr::parse("192.0.2.60").unwrap()))
        );
        assert_eq!(els[0].proto.as_deref(), Some("http"));
        assert_eq!(
            els[0].by,
            Some(Node::Addr(Addr::parse("203.0.113.43").unwrap()))
        );
        let Some(Node::Addr(a)) = &els[1].for_ else {
            panic!("{:?}", els[1])
        };
        assert_eq!(a.to_string(), "[2001:db8:cafe::17]:4711");
        assert!(els.iter().all(|e| e.error.is_none()));
    }

    #[test]
    fn forwarded_names_case_insensitive_and_host() {
        let els = parse_forwarded(b"For=\"_gazonk\"; HOST=example.com ;Proto=https");
        assert_eq!(els[0].for_, Some(Node::Obfuscated("_gazonk".into())));
        assert_eq!(els[0].host.as_deref(), Some("example.com"));
        assert_eq!(els[0].proto.as_deref(), Some("https"));
    }

    #[test]
    fn forwarded_opaque_nodes() {
        assert_eq!(fors("for=unknown, for=UNKNOWN")[1], Some(Node::Unknown));
        assert_eq!(
            fors("for=_hidden")[0],
            Some(Node::Obfuscated("_hidden".into()))
        );
        assert!(matches!(
            fors("for=\"_bad/char\"")[0],
            Some(Node::Invalid(..))
        ));
        let Some(Node::Addr(a)) = &fors("for=\"[2001:db8::1]:_p1\"")[0] else {
            panic!()
        };
        assert_eq!(a.port, None);
        let Some(Node::Addr(a)) = &fors("for=192.0.2.1:_p1")[0] else {
            panic!()
        };
        assert_eq!(a.to_string(), "192.0.2.1");
    }

    #[test]
    fn forwarded_sabotage_does_not_poison_later_elements() {
        // A client sends an unclosed quote; its proxy appends a good element.
        let els = parse_forwarded(b"for=\"1.2.3.4, for=5.6.7.8");
        assert_eq!(els.len(), 2, "{els:?}");
        assert_eq!(els[0].error, Some(ForwardedError::UnclosedQuote));
        assert_eq!(
            els[1].for_,
            Some(Node::Addr(Addr::parse("5.6.7.8").unwrap()))
        );
        assert_eq!(els[1].error, None);
    }

    #[test]
    fn forwarded_broken_elements() {
        let els = parse_forwarded(b"for=1.1.1.1;for=2.2.2.2, for=3.3.3.3");
        assert_eq!(els[0].error, Some(ForwardedError::DuplicateParam));
        assert_eq!(els[1].error, None);
        let els = parse_forwarded(b"garbage, for=3.3.3.3");
        assert_eq!(els[0].error, Some(ForwardedError::BadPair));
        assert_eq!(
            els[1].for_,
            Some(Node::Addr(Addr::parse("3.3.3.3").unwrap()))
        );
        let els = parse_forwarded(b"for=1.1.1.1 x, for=3.3.3.3");
        assert_eq!(els[0].error, Some(ForwardedError::TrailingGarbage));
        let els = parse_forwarded(b"for=\"a\\\"b\"");
        assert!(matches!(&els[0].for_, Some(Node::Invalid(v, _)) if v == "a\"b"));
        let els = parse_forwarded(b"for=1.1.1.1, for=2.2.2.\xff");
        assert_eq!(
            els.last().unwrap().error,
            Some(ForwardedError::TrailingGarbage)
        );
        assert!(parse_forwarded(b"").is_empty());
        assert_eq!(parse_forwarded(b" , ,for=1.1.1.1").len(), 1);
    }

    #[test]
    fn forwarded_bound_holds_with_bad_utf8_at_the_end() {
        // Regression (fuzz/forwarded): 64 good elements, then a byte that
        // is not UTF-8, made 65.
        let mut v = vec!["for=1.1.1.1"; MAX_FORWARDED_ELEMENTS]
            .join(",")
            .into_bytes();
        v.extend_from_slice(b",\xde");
        let els = parse_forwarded(&v);
        assert_eq!(els.len(), MAX_FORWARDED_ELEMENTS);
        assert_eq!(els[0].error, Some(ForwardedError::TooManyElements));
        assert_eq!(
            els.last().unwrap().error,
            Some(ForwardedError::TrailingGarbage)
        );
        let crash = b"$<,:&<#<,&,&&,&,\x16,:\x16,,&,:&&,&,\x16,:\x16,\x16\x16,#&#,<<,:&<#<,&,&&,&,\x16,:\x16,\x16\x16,#&#,<<,:&<#<,\x16,+#,:<<#<,&,\x16,:\x16,\x16\x16,#&#,<<,:#<,&,\x16,:\x16,\x16\x16,:\x16,\x16\x16,\x00\x00\x008#&#,<<,:&<#<,&,&,\x16,:#,:<<&<#<,&,&,:&&,&,\x16,:\x16,\x16\x16,#&#,<<,:&<#<,&,&,\x16,:#,:<<#<&,:&&\n\xde";
        assert!(parse_forwarded(crash).len() <= MAX_FORWARDED_ELEMENTS);
    }

    #[test]
    fn forwarded_is_bounded() {
        let mut long = vec!["for=1.1.1.1"; 1000].join(",");
        long.push_str(", for=9.9.9.9");
        let els = parse_forwarded(long.as_bytes());
        assert_eq!(els.len(), MAX_FORWARDED_ELEMENTS);
        assert_eq!(els[0].error, Some(ForwardedError::TooManyElements));
        assert_eq!(
            els.last().unwrap().for_,
            Some(Node::Addr(Addr::parse("9.9.9.9").unwrap()))
        );
    }
}
