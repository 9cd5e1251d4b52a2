//! realip-proxy: the PROXY protocol v1/v2 wire codec (haproxy
//! `doc/proxy-protocol.txt`).
//!
//! Parsing is incremental ([`Parsed::Incomplete`] says how many more bytes
//! are needed; an error says the bytes can never become a header) and
//! bounded (v1 never looks past 107 bytes, v2 never past `16 + len`, and
//! `len` is capped by [`ParseConfig::max_v2_len`]). The parsed [`Header`]
//! borrows its TLVs from the input: parsing allocates nothing.
//!
//! What this crate must not do: I/O, `unsafe`, panics on any input, reading
//! past the declared length, or deciding whether a header *should* be there
//! (configuration decides; the spec forbids guessing).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod detect;
mod encode;
mod error;
mod header;
mod parse;
mod tlv;
mod v1;
mod v2;

pub use detect::{detect, Detect, SIGNATURE, V1_MAX_LEN, V1_PREFIX, V2_PREAMBLE};
pub use encode::{encode_v1, encode_v2, encode_v2_into, OwnedHeader, OwnedTlv};
pub use error::{EncodeError, Error};
pub use header::{
    AddressFamily, Addresses, Command, Header, ParseConfig, Parsed, Transport, Version,
};
pub use parse::parse;
pub use tlv::{tlv_type, RawTlv, RawTlvs, Ssl, Tlv, Tlvs, MAX_UNIQUE_ID};
pub use v1::parse_v1;
pub use v2::parse_v2;

#[cfg(test)]
mod tests;
