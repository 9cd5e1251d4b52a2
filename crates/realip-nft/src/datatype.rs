//! nft's data type numbers, for set keys: the kernel ignores them, `nft
//! list` uses them to print elements.

/// A plain integer.
pub const INTEGER: u32 = 4;
/// `ipv4_addr`.
pub const IPADDR: u32 = 7;
/// `ipv6_addr`.
pub const IP6ADDR: u32 = 8;
/// `inet_proto`.
pub const INET_PROTOCOL: u32 = 12;
/// `inet_service`.
pub const INET_SERVICE: u32 = 13;
/// `mark`: a host-order 32-bit integer (what `numgen` yields).
pub const MARK: u32 = 19;

/// The type of a concatenation `a . b . c`, as nft computes it.
pub fn concat(types: &[u32]) -> u32 {
    types.iter().fold(0, |acc, t| (acc << 6) | t)
}
