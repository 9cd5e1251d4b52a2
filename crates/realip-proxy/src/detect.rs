//! The fixed bytes that open each version, and telling from the first few
//! whether a connection starts with a header at all.

/// The v2 signature.
pub const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
/// The v1 prefix.
pub const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// The longest v1 header, CRLF included (the spec's worst case).
pub const V1_MAX_LEN: usize = 107;
/// The fixed part of a v2 header.
pub const V2_PREAMBLE: usize = 16;

/// What the first bytes look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detect {
    /// The v1 prefix.
    V1,
    /// The v2 signature.
    V2,
    /// Neither, and more bytes will not change that.
    Neither,
    /// Consistent with a header so far; this many more bytes decide.
    NeedMore(usize),
}

/// Tell v1 from v2 from neither.
pub fn detect(buf: &[u8]) -> Detect {
    let (want, is_v1): (&[u8], bool) = match buf.first() {
        None => return Detect::NeedMore(1),
        Some(b'P') => (V1_PREFIX, true),
        Some(0x0D) => (&SIGNATURE, false),
        Some(_) => return Detect::Neither,
    };
    let n = buf.len().min(want.len());
    if buf[..n] != want[..n] {
        return Detect::Neither;
    }
    if n < want.len() {
        return Detect::NeedMore(want.len() - n);
    }
    if is_v1 {
        Detect::V1
    } else {
        Detect::V2
    }
}
