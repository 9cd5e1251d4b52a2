//! The hops of a list header (X-Forwarded-For style or RFC 7239), parsed
//! lazily so the fast path stops parsing once it has an answer.

use crate::addr::{Addr, AddrError};
use crate::headers::{self, Headers, Node};

use super::report::HopAddr;

/// A hop as the walk sees it.
#[derive(Debug, Clone)]
pub(super) enum RawHop<'h> {
    Addr(Addr),
    Unknown,
    Obfuscated(std::borrow::Cow<'h, str>),
    Missing,
    Invalid(String, String),
    /// Invalid, kept cheap for the fast path: the bytes and the error.
    InvalidBytes(&'h [u8], AddrError),
}

impl RawHop<'_> {
    pub(super) fn is_opaque(&self) -> bool {
        matches!(
            self,
            RawHop::Unknown | RawHop::Obfuscated(_) | RawHop::Missing
        )
    }

    pub(super) fn to_report_addr(&self) -> HopAddr {
        match self {
            RawHop::Addr(a) => HopAddr::Addr(a.clone()),
            RawHop::Unknown => HopAddr::Unknown,
            RawHop::Obfuscated(s) => HopAddr::Obfuscated(s.to_string()),
            RawHop::Missing => HopAddr::Missing,
            RawHop::Invalid(t, e) => HopAddr::Invalid {
                text: t.clone(),
                error: e.clone(),
            },
            RawHop::InvalidBytes(b, e) => HopAddr::Invalid {
                text: headers::display_bytes(b),
                error: e.to_string(),
            },
        }
    }
}

#[inline]
fn xff_hop(tok: &[u8]) -> RawHop<'_> {
    match Addr::parse_bytes(tok) {
        Ok(a) => RawHop::Addr(a),
        Err(e) => RawHop::InvalidBytes(tok, e),
    }
}

pub(super) fn forwarded_hop(el: headers::ForwardedElement<'_>) -> RawHop<'_> {
    if let Some(err) = el.error {
        return RawHop::Invalid(el.raw.to_string(), err.to_string());
    }
    match el.for_ {
        None => RawHop::Missing,
        Some(Node::Addr(a)) => RawHop::Addr(a),
        Some(Node::Unknown) => RawHop::Unknown,
        Some(Node::Obfuscated(s)) => RawHop::Obfuscated(s),
        Some(Node::Invalid(t, e)) => RawHop::Invalid(t.into_owned(), e.to_string()),
    }
}

pub(super) fn is_forwarded(name: &str) -> bool {
    name.eq_ignore_ascii_case("forwarded")
}

/// Hops of a list header, nearest first, produced lazily.
pub(super) fn hops_rev<'h, H: Headers + ?Sized>(
    headers: &'h H,
    name: &'h str,
) -> impl Iterator<Item = RawHop<'h>> + 'h {
    let forwarded = is_forwarded(name);
    let xff = (!forwarded).then(|| headers::xff_entries_rev(headers.values(name)).map(xff_hop));
    let fwd = forwarded.then(|| {
        headers.values(name).rev().flat_map(|v| {
            headers::parse_forwarded(v)
                .into_iter()
                .rev()
                .map(forwarded_hop)
        })
    });
    xff.into_iter().flatten().chain(fwd.into_iter().flatten())
}

/// Hops of a list header, far client first.
pub(super) fn hops_fwd<'h, H: Headers + ?Sized>(
    headers: &'h H,
    name: &'h str,
) -> impl Iterator<Item = RawHop<'h>> + 'h {
    let forwarded = is_forwarded(name);
    let xff = (!forwarded).then(|| headers::xff_entries(headers.values(name)).map(xff_hop));
    let fwd = forwarded.then(|| {
        headers
            .values(name)
            .flat_map(|v| headers::parse_forwarded(v).into_iter().map(forwarded_hop))
    });
    xff.into_iter().flatten().chain(fwd.into_iter().flatten())
}

pub(super) fn count_entries<H: Headers + ?Sized>(headers: &H, name: &str) -> usize {
    if is_forwarded(name) {
        headers
            .values(name)
            .map(|v| headers::parse_forwarded(v).len())
            .sum()
    } else {
        headers.values(name).map(headers::count_xff_entries).sum()
    }
}
