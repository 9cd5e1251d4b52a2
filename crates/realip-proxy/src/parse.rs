//! The one entry point most callers need: whichever version the bytes hold.

use crate::detect::{detect, Detect};
use crate::error::Error;
use crate::header::{ParseConfig, Parsed};
use crate::v1::parse_v1;
use crate::v2::parse_v2;

/// Parse either version, whichever the bytes start with.
pub fn parse<'a>(buf: &'a [u8], cfg: &ParseConfig) -> Result<Parsed<'a>, Error> {
    match detect(buf) {
        Detect::V1 => parse_v1(buf),
        Detect::V2 => parse_v2(buf, cfg),
        Detect::NeedMore(n) => Ok(Parsed::Incomplete { needed: n }),
        Detect::Neither => Err(Error::NotProxy),
    }
}
