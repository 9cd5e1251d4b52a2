//! realip-net: the socket side of client-IP evidence, on tokio.
//!
//! It reads a PROXY protocol header off a fresh connection (bounded, timed
//! out, never guessing whether one is there), hands the bytes that followed
//! it back through [`Rewind`], and splits a PROXY header off a datagram.
//! It reads an HTTP/1 head for the fast paths of whoami and the lb
//! ([`read_head`]: the caller parses, the reader bounds and times it).
//!
//! What it must not do: decide who the client is (realip-core does), believe
//! a header from an untrusted peer (callers check trust *before* reading, so
//! a stranger cannot even make us parse), or read without a bound or a
//! deadline.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod accept;
mod answer;
mod duration;
mod head;
mod http_server;
mod idle;
mod mode;
mod proxy_header;
mod rewind;
mod timer;
pub mod tls;

pub use accept::CappedAccept;
pub use answer::ANSWER_408;
pub use duration::parse_duration;
pub use head::{read_head, Deadline, HeadError, HeadLimits};
pub use http_server::http_server;
pub use idle::IdleTimeout;
pub use mode::{ProxyMode, UnknownProxyMode};
pub use proxy_header::{
    claim_of, read_proxy_header, split_datagram, ProxyHeader, ProxyLimits, ProxyReadError,
};
pub use rewind::Rewind;
pub use timer::ConnTimer;
