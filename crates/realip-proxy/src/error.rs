//! Why bytes cannot be parsed or a header cannot be encoded: one named
//! variant per offence, so callers can log and count them apart.

use crate::detect::V1_MAX_LEN;

/// Why bytes are not, and can never become, a valid header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Neither the v1 prefix nor the v2 signature.
    #[error("not a PROXY protocol header")]
    NotProxy,
    /// No CRLF within 107 bytes.
    #[error("PROXY v1: no CRLF within {V1_MAX_LEN} bytes")]
    V1TooLong,
    /// A CR or LF that is not part of the final CRLF.
    #[error("PROXY v1: a bare CR or LF")]
    V1BareCrLf,
    /// The line's shape is wrong.
    #[error("PROXY v1: {0}")]
    V1Malformed(&'static str),
    /// An address that does not parse, or of the wrong family.
    #[error("PROXY v1: {0} address is not a valid {1} address")]
    V1BadAddress(&'static str, &'static str),
    /// A port that is not 0-65535 without leading zeros.
    #[error("PROXY v1: {0} port is not a number from 0 to 65535 without leading zeros")]
    V1BadPort(&'static str),
    /// Version nibble is not 2.
    #[error("PROXY v2: version {0} (only 2 exists)")]
    V2Version(u8),
    /// Command nibble is not LOCAL or PROXY.
    #[error("PROXY v2: command {0} (expected 0 LOCAL or 1 PROXY)")]
    V2Command(u8),
    /// Family nibble out of range.
    #[error("PROXY v2: address family {0} (expected 0-3)")]
    V2Family(u8),
    /// Transport nibble out of range.
    #[error("PROXY v2: transport {0} (expected 0-2)")]
    V2Transport(u8),
    /// `len` over the configured cap.
    #[error("PROXY v2: length {len} over the limit of {max}")]
    V2TooLong {
        /// Declared.
        len: u16,
        /// Allowed.
        max: u16,
    },
    /// `len` smaller than the family's address block.
    #[error("PROXY v2: length {len} shorter than the {need}-byte address block")]
    V2ShortAddress {
        /// Declared.
        len: u16,
        /// Needed.
        need: u16,
    },
    /// A TLV runs past the header's end.
    #[error("PROXY v2: TLV 0x{0:02x} runs past the end of the header")]
    TlvOverrun(u8),
    /// A TLV with a length its type does not allow.
    #[error("PROXY v2: TLV 0x{kind:02x} has a bad length {len}")]
    TlvBadLength {
        /// Type.
        kind: u8,
        /// Length.
        len: usize,
    },
    /// A text TLV that is not UTF-8.
    #[error("PROXY v2: TLV 0x{0:02x} is not UTF-8")]
    TlvNotUtf8(u8),
    /// The CRC32C does not match.
    #[error("PROXY v2: CRC32C mismatch (header says {expected:08x}, computed {computed:08x})")]
    CrcMismatch {
        /// From the TLV.
        expected: u32,
        /// Over the header.
        computed: u32,
    },
}

/// Why a header cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// v1 carries only TCP over IPv4/IPv6 (or UNKNOWN).
    #[error("PROXY v1 cannot carry {0}")]
    V1Unsupported(&'static str),
    /// The TLVs make the header longer than 65535 bytes.
    #[error("PROXY v2 header would be {0} bytes, over 65535")]
    TooLong(usize),
    /// A TLV value too long for its type.
    #[error("TLV 0x{kind:02x} value of {len} bytes is too long")]
    TlvTooLong {
        /// Type.
        kind: u8,
        /// Length.
        len: usize,
    },
}
