//! The address families nf_tables programs here.

/// An nf_tables address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `ip`: NFPROTO_IPV4.
    Ipv4,
    /// `ip6`: NFPROTO_IPV6.
    Ipv6,
}

impl Family {
    pub(crate) fn nfproto(self) -> u8 {
        match self {
            Family::Ipv4 => 2,
            Family::Ipv6 => 10,
        }
    }
}
