//! realip-net: the socket side of client-IP evidence, on tokio.
//!
//! It holds the PROXY protocol's expect role ([`Expect::accept`], the one
//! accept step every PROXY-capable listener takes: the trust gate, then a
//! header read off the fresh connection, bounded, timed out, never guessing
//! whether one is there), hands the bytes that followed it back through
//! [`Rewind`], and splits a PROXY header off a datagram.
//! It also reads an HTTP/1 head for the fast paths of whoami and the lb
//! ([`read_head`]: the caller parses, the reader bounds and times it).
//!
//! Sōzu's three PROXY roles, and where each lives:
//! - **expect**: a listener that requires a header reads it before its
//!   protocol starts: [`Expect`], here;
//! - **send**: a proxy writes a header for its backend: realip-proxy's
//!   encoder, used by realip-lb's `proxy_send`;
//! - **relay**: a proxy passes on the client a header told it. realip has
//!   no mode of its own for it: relay = expect, then send with the
//!   [`Accepted::client`] received (the received header itself, TLVs and
//!   all, is not copied), which is what realip-lb does with `accept_proxy`
//!   and `client-ip: proxy-v1 | proxy-v2`.
//!
//! What it must not do: decide who the client is beyond what a trusted
//! header claims (realip-core's resolver does), believe a header from an
//! untrusted peer (trust is checked *before* reading, so a stranger cannot
//! even make us parse), or read without a bound or a deadline.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod accept;
mod accepted;
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
pub use accepted::{AcceptError, Accepted, Expect};
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
