//! realip-core decides who the client is, under a trust configuration, and
//! explains the decision.
//!
//! Evidence comes from the socket peer, X-Forwarded-For, X-Real-IP, RFC 7239
//! `Forwarded`, PROXY protocol v1/v2, the TOA TCP option and a custom
//! protocol's client-IP field. A [`Resolver`] walks it with a [`Strategy`]
//! chain and a [`TrustSet`] and returns a typed [`ClientAddr`], or with
//! [`Resolver::explain`] a [`Resolution`] listing every hop, whether it was
//! trusted and why, and why the walk stopped.
//!
//! What this crate must not do: I/O of any kind, `unsafe`, panics on input
//! from the network, or believing a header from a peer it was not told to
//! trust. Sockets and HTTP live in the crates above it.
//!
//! ```
//! use realip_core::{Request, Resolver, Strategy, TrustSet};
//! let resolver = Resolver::new(
//!     TrustSet::parse(["10.0.0.0/8"]).unwrap(),
//!     vec!["rightmost-trusted-range".parse::<Strategy>().unwrap()],
//! );
//! let headers = vec![("X-Forwarded-For", "3.3.3.3, 10.0.0.1")];
//! let req = Request::new("10.0.0.5:555".parse().unwrap(), &headers);
//! assert_eq!(resolver.resolve(&req).unwrap().ip.to_string(), "3.3.3.3");
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod field;
pub mod headers;
#[cfg(feature = "serde")]
pub mod json;
pub mod resolve;
pub mod strategy;
pub mod toa;
pub mod trust;

/// The PROXY protocol v1/v2 codec (the `realip-proxy` crate).
pub use realip_proxy as proxy;

pub use addr::{Addr, AddrError};
pub use headers::{Headers, NoHeaders};
pub use resolve::{
    BackendAddr, ClientAddr, HopAddr, HopReport, LocalAddr, PeerAddr, ProxyClaim, Request,
    Resolution, Resolver, Source, Step, Stop, Verdict,
};
pub use strategy::{HeaderName, Strategy, StrategyError};
pub use trust::{Cidr, Preset, TrustError, TrustSet};
